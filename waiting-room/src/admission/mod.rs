//! Putting the waiting room in front of an existing site (docs/integration.md): which
//! site an event admits its active fans to ([`policy_update`]), the sites' API keys
//! ([`site_keys`], managed through the admin API in [`admin_keys`]), and the slot API
//! a site calls when its fan bought or left ([`slot_api`]).
//!
//! The admission token itself is signed where a ticket's status is made
//! (`tickets::status`): it is only ever handed to the fan whose ticket is active.

pub mod admin_keys;
pub mod policy_update;
pub mod site_keys;
pub mod slot_api;

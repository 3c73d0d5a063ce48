//! The fans' side: joining the line ([`join`], whose Redis writes are in [`join_store`]
//! and share round trips through the [`redis_batch`]er), where a ticket stands by
//! polling ([`status`]) and live over SSE ([`stream`], fed by one [`serving_feed`] per
//! instance, bounded by [`stream_slots`], keeping streaming fans [`presence`]-d),
//! the join rate limits shared through Redis ([`rate_limit`]), and the registrations
//! Redis refused after the broker acknowledged ([`registration_repair`]).

pub(crate) mod join;
pub(crate) mod join_store;
pub(crate) mod presence;
pub(crate) mod rate_limit;
pub mod redis_batch;
pub(crate) mod registration_repair;
pub(crate) mod serving_feed;
pub(crate) mod status;
pub(crate) mod stream;
pub(crate) mod stream_slots;

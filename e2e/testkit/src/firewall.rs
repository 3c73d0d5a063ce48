//! Loopback packet loss for one TCP connection, with nftables: the peer on the other
//! end sees a client that vanished without a reset (a phone that lost its network, a
//! crashed NAT), which a closed socket cannot imitate.
//!
//! The rule lives in a table of its own, named after the port it silences, and matches
//! only that port, so tests running at the same time are not touched; dropping the guard
//! deletes the table, on a failed assertion too. Needs root and `nft` (Debian's
//! `nftables`, which `deploy/local.sh test` installs).

use std::process::Command;

/// Drops every packet to and from one local TCP port while it lives.
pub struct SilencedPort {
    table: String,
}

impl SilencedPort {
    /// From now on nothing reaches `port` and nothing leaves it; connections on it stay
    /// open on both ends, unacknowledged.
    pub fn drop_all(port: u16) -> Self {
        let table = format!("testkit_silence_{port}");
        // Loopback traffic passes the output hook once per direction.
        let ruleset = format!(
            "table inet {table} {{\n\
               chain output {{\n\
                 type filter hook output priority 0; policy accept;\n\
                 tcp sport {port} drop\n\
                 tcp dport {port} drop\n\
               }}\n\
             }}\n"
        );
        nft(&["-f", "-"], Some(&ruleset));
        Self { table }
    }
}

impl Drop for SilencedPort {
    fn drop(&mut self) {
        nft(&["delete", "table", "inet", &self.table], None);
    }
}

fn nft(args: &[&str], input: Option<&str>) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run nft ({error}): install Debian's nftables and run as root (deploy/local.sh test does both)")
        });
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("nft's stdin")
            .write_all(input.as_bytes())
            .expect("write the nft ruleset");
    }
    drop(child.stdin.take());
    let status = child.wait().expect("wait for nft");
    assert!(status.success(), "nft {args:?} failed ({status})");
}

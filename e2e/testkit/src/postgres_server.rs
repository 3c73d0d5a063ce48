//! A PostgreSQL server of the test's own that accepts TLS connections only (`hostssl`
//! in its `pg_hba.conf`, plaintext rejected), with a certificate the test generated:
//! what a managed database with `require_secure_transport` looks like to a client.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::service::{free_port, wait_for_port};
use crate::tls::TestCertificates;

pub struct PrivatePostgres {
    pub port: u16,
    data: PathBuf,
    child: std::process::Child,
}

impl PrivatePostgres {
    /// Initialises a cluster in a temporary directory and starts it on a free port.
    /// Run as root (CI), the server runs as the `postgres` user, as it insists.
    pub async fn start_tls(certs: &TestCertificates) -> Self {
        let bin = server_binaries();
        let owner = postgres_user();
        let data = std::env::temp_dir().join(format!("wr-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data).expect("create the data directory");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .expect("chown the data directory");
            certs.give_to(uid, gid);
        }
        let as_owner = |program: PathBuf| {
            let mut command = std::process::Command::new(program);
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
            command
        };
        let status = as_owner(bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .expect("write pg_hba.conf");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(data.join("pg_hba.conf"), Some(uid), Some(gid))
                .expect("chown pg_hba.conf");
        }
        let port = free_port();
        let setting = |name: &str, value: &dyn std::fmt::Display| format!("{name}={value}");
        let child = as_owner(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "ssl=on",
            ])
            .args([
                "-c",
                &setting("ssl_cert_file", &certs.server_cert_file.display()),
            ])
            .args([
                "-c",
                &setting("ssl_key_file", &certs.server_key_file.display()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run postgres");
        let server = Self { port, data, child };
        wait_for_port(port, "private postgres").await;
        server
    }

    /// A URL to `database` with the given `sslmode` and, when given, the CA to check
    /// the server's certificate against.
    pub fn url(&self, database: &str, sslmode: &str, ca: Option<&std::path::Path>) -> String {
        let mut url = format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode={sslmode}",
            self.port
        );
        if let Some(ca) = ca {
            url.push_str(&format!("&sslrootcert={}", ca.display()));
        }
        url
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // A fast shutdown (SIGINT) lets the server remove its shared memory and socket.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The newest installed server's binaries (Debian's layout, as `deploy/local.sh`).
fn server_binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries under /usr/lib/postgresql; `deploy/local.sh test` installs them")
    })
}

/// The `postgres` user's ids when running as root (initdb refuses root).
fn postgres_user() -> Option<(u32, u32)> {
    let running_as_root = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))?;
    if !running_as_root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .expect("a postgres user (Debian's postgresql package creates it)");
    let fields: Vec<&str> = line.split(':').collect();
    Some((
        fields[2].parse().expect("postgres uid"),
        fields[3].parse().expect("postgres gid"),
    ))
}

//! A real MongoDB-protocol server (SecantusDB) per test: started on a free port, waited for, and
//! killed when dropped. `scripts/test` puts `secantusd-py` on PATH (or set CHUTE_SECANTUSD).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A name no earlier run used, so tests stay independent on the persistent local stack.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{}x{}", std::process::id(), nanos % 1_000_000_000)
}

/// The repository root (scripts/, events/, schemas/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct MongoServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> String {
    std::env::var("CHUTE_SECANTUSD").unwrap_or_else(|_| "secantusd-py".to_string())
}

impl MongoServer {
    pub async fn start() -> MongoServer {
        let dir = std::env::temp_dir().join(format!(
            "chute-test-db-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = MongoServer {
            child: None,
            port: free_port(),
            dir,
        };
        server.launch().await;
        server
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Starts (or restarts) the server on the same port and data directory, and waits for `ping`.
    pub async fn launch(&mut self) {
        let child = Command::new(binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--storage-path",
                self.dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run the tests with scripts/test, which installs it",
                    binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ping().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SecantusDB did not answer ping within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ping(&self) -> bool {
        let mut options = mongodb::options::ClientOptions::parse(self.uri())
            .await
            .unwrap();
        options.server_selection_timeout = Some(Duration::from_millis(500));
        let client = mongodb::Client::with_options(options).unwrap();
        client
            .database("admin")
            .run_command(bson::doc! {"ping": 1})
            .await
            .is_ok()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

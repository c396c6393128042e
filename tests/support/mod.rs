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

/// The repository root (scripts/, events/, schemas/), also from a workspace member (cli/tests
/// include this module).
/// Who writes, as an import of `run` by feed source `source` would say (file named after both).
pub fn write_context(
    run: &str,
    source: &str,
    mode: chute::feed::Mode,
) -> chute::store::WriteContext {
    chute::store::WriteContext {
        run_id: run.to_string(),
        object: format!("s3://bucket/incoming/{source}/{run}.csv"),
        feed_source: source.to_string(),
        mode,
        at: bson::DateTime::now(),
        reapply: false,
    }
}

pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|dir| dir.join("scripts/stack").is_file())
        .unwrap_or(&here)
        .to_path_buf()
}

/// The counts of a write that inserted, updated, left unchanged and refused these many documents,
/// merging and reactivating none: what most writes of the store tests come to.
pub fn written(
    inserted: u64,
    updated: u64,
    unchanged: u64,
    refused: u64,
) -> chute::run::WriteCounts {
    chute::run::WriteCounts {
        inserted,
        updated,
        unchanged,
        refused,
        ..chute::run::WriteCounts::default()
    }
}

/// The names of the indexes of a store's `products` collection.
pub async fn product_indexes(store: &chute::store::Store) -> Vec<String> {
    store
        .database()
        .collection::<bson::Document>("products")
        .list_index_names()
        .await
        .unwrap()
}

/// Every document of a store's `products` collection, by `sku`.
pub async fn products_by_sku(store: &chute::store::Store) -> Vec<bson::Document> {
    let mut cursor = store
        .database()
        .collection::<bson::Document>("products")
        .find(bson::doc! {})
        .sort(bson::doc! {"sku": 1})
        .await
        .unwrap();
    let mut documents = Vec::new();
    while cursor.advance().await.unwrap() {
        documents.push(cursor.deserialize_current().unwrap());
    }
    documents
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
    /// It waits on what it sees, not on a clock: until the server answers, or its process exits
    /// (then the test fails with the exit status and the server's log). On a loaded machine a
    /// start can take long; the 5-minute bound only keeps a hung server from hanging the suite.
    pub async fn launch(&mut self) {
        let log_path = self.dir.join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--storage-path",
                self.dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run the tests with scripts/test, which installs it",
                    binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ping().await {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "SecantusDB exited ({status}) before answering ping: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "SecantusDB is running but did not answer ping in 5 minutes"
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

/// The tests' own local stack (`.dev/test`, database `chute_test`): a person's stack in `.dev` and
/// its `chute` database are never touched. Brought up once per test binary; every setting comes
/// from the `local.env` that `scripts/stack` writes, never from this shell's environment.
pub struct Stack {
    settings: std::collections::HashMap<String, String>,
}

pub fn stack() -> &'static Stack {
    static STACK: std::sync::OnceLock<Stack> = std::sync::OnceLock::new();
    STACK.get_or_init(|| {
        let up = Stack::script("stack").arg("up").status().unwrap();
        assert!(up.success(), "CHUTE_STACK=test scripts/stack up failed");
        let path = root().join(".dev/test/local.env");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let settings: std::collections::HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Never fall back to ambient credentials and real endpoints: refuse instead.
        let endpoint = settings.get("AWS_ENDPOINT_URL").map(String::as_str);
        assert!(
            endpoint.is_some_and(|e| e.starts_with("http://127.0.0.1:")),
            "refusing to run: {} names no local AWS endpoint ({endpoint:?}); tests never reach real AWS",
            path.display()
        );
        Stack { settings }
    })
}

impl Stack {
    /// `scripts/NAME` aimed at the tests' stack, with none of this shell's stack settings.
    /// `scripts/stack up`: starts (or restarts) whatever of the tests' stack is down.
    pub fn up() {
        let up = Stack::script("stack").arg("up").output().unwrap();
        assert!(
            up.status.success(),
            "scripts/stack up: {}",
            String::from_utf8_lossy(&up.stderr)
        );
    }

    pub fn script(name: &str) -> Command {
        let mut command = Command::new(root().join("scripts").join(name));
        command
            .env("CHUTE_STACK", "test")
            .env_remove("CHUTE_STACK_DIR")
            .env_remove("CHUTE_MONGODB_URI")
            .env_remove("CHUTE_DATABASE");
        command
    }

    pub fn get(&self, name: &str) -> &str {
        self.settings
            .get(name)
            .unwrap_or_else(|| panic!("the stack's local.env has no {name}"))
    }

    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.get("STACK_DIR"))
    }

    pub fn bucket(&self) -> &str {
        self.get("CHUTE_BUCKET")
    }

    /// Points this process at the stack, as the stack's functions are (for in-process handlers).
    pub fn export(&self) {
        for (k, v) in &self.settings {
            std::env::set_var(k, v);
        }
    }

    /// The pid the stack recorded for a service (`mongo`, `shim`, …) or function (`fn-import`).
    pub fn pid(&self, name: &str) -> i32 {
        let path = self.dir().join("pids").join(format!("{name}.pid"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends `signal` (`-STOP`, `-KILL`, …) to exactly that process, never to a name.
    pub fn signal(&self, name: &str, signal: &str) {
        let pid = self.pid(name);
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal} {pid} ({name})");
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// The shim's view of one function: its state, concurrency, timeout, timeouts so far and
    /// its processes (`sandboxes`).
    pub fn function(&self, name: &str) -> serde_json::Value {
        let out = Command::new(root().join(".dev/venv/bin/python"))
            .arg(root().join("scripts/stack_tools.py"))
            .args(["health", "--json"])
            .env("CHUTE_STACK_DIR", self.dir())
            .output()
            .unwrap();
        let all: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("health: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        all[name].clone()
    }

    /// `scripts/stack_tools.py ARGS…` on this stack: the shim's knobs for fault tests (`hold`,
    /// `release`, `timeout`). Whether it succeeded.
    #[must_use]
    pub fn tools(&self, args: &[&str]) -> bool {
        Command::new(root().join(".dev/venv/bin/python"))
            .arg(root().join("scripts/stack_tools.py"))
            .args(args)
            .env("CHUTE_STACK_DIR", self.dir())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The running processes of a function's pool, as the shim records them.
    pub fn processes(&self, function: &str) -> Vec<Process> {
        let all = self.function(function);
        all["sandboxes"]
            .as_array()
            .unwrap_or_else(|| panic!("{function}: {all}"))
            .iter()
            .filter_map(|s| {
                let slot = s["slot"].as_u64()?;
                Some(Process {
                    pid_name: if slot == 1 {
                        format!("fn-{function}")
                    } else {
                        format!("fn-{function}-{slot}")
                    },
                    pid: i32::try_from(s["pid"].as_i64()?).ok()?,
                    state: s["state"].as_str().unwrap_or_default().to_string(),
                    inflight: s["inflight"].clone(),
                    holding: s["holding"].as_bool().unwrap_or(false),
                })
            })
            .collect()
    }

    /// The emails moto's SES has accepted so far.
    pub fn sent_emails(&self) -> Vec<serde_json::Value> {
        let out = Command::new(root().join(".dev/venv/bin/python"))
            .arg(root().join("scripts/stack_tools.py"))
            .arg("emails")
            .env("CHUTE_STACK_DIR", self.dir())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("emails: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Every run-finished event the stack's rule on the default bus delivered so far, oldest first,
    /// as EventBridge shapes them (`source`, `detail-type`, `detail`).
    pub fn run_events(&self) -> Vec<serde_json::Value> {
        let out = Command::new(root().join(".dev/venv/bin/python"))
            .arg(root().join("scripts/stack_tools.py"))
            .arg("run-events")
            .env("CHUTE_STACK_DIR", self.dir())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("run-events: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// The events of a run's execution (named by its run id), as Step Functions lists them.
    pub fn history(&self, run_id: &str) -> Vec<serde_json::Value> {
        let out = Command::new(root().join(".dev/venv/bin/python"))
            .arg(root().join("scripts/stack_tools.py"))
            .args(["history", run_id])
            .env("CHUTE_STACK_DIR", self.dir())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("history: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    pub async fn database(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(self.get("CHUTE_MONGODB_URI"))
            .await
            .unwrap()
            .database(self.get("CHUTE_DATABASE"))
    }

    /// Documents in `products` whose `sku` starts with `prefix`.
    pub async fn count(&self, prefix: &str) -> u64 {
        self.database()
            .await
            .collection::<bson::Document>("products")
            .count_documents(bson::doc! {"sku": {"$regex": format!("^{prefix}")}})
            .await
            .unwrap_or(0)
    }
}

/// One process of a function's pool (a Lambda sandbox): the name its pid is recorded under
/// (`fn-import` for the first, `fn-import-2`, …), what it is doing, the invocation it holds.
pub struct Process {
    pub pid_name: String,
    pub pid: i32,
    /// `starting`, `idle` (asked for work), `busy`.
    pub state: String,
    /// `{request_id, run, chunk, deadline_ms}` of the invocation it holds, or null.
    pub inflight: serde_json::Value,
    /// Its answer is held by the shim (`hold`).
    pub holding: bool,
}

/// Whether a process runs: a zombie (killed, not yet reaped by its parent) does not.
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(!matches!(state, 'Z' | 'X'))
        })
        .unwrap_or(false)
}

/// A report's numbers add up: every row in exactly one bucket, and what the import wrote equals
/// what the transform found valid (two counts the report keeps apart).
pub fn accounting_holds(report: &serde_json::Value) {
    let n = |path: &str| {
        report
            .pointer(path)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("report has {path}: {report}"))
    };
    let parts: u64 = ["valid", "rejected", "duplicate", "unprocessed"]
        .iter()
        .map(|k| n(&format!("/rows/{k}")))
        .sum();
    // `skipped` is serialised only when non-zero.
    let skipped = report
        .pointer("/rows/skipped")
        .map_or(0, |s| s.as_u64().unwrap());
    assert_eq!(
        n("/rows/total"),
        parts + skipped,
        "total = valid + rejected + duplicate + skipped + unprocessed: {report}"
    );
    let written: u64 = ["inserted", "updated", "unchanged"]
        .iter()
        .map(|k| n(&format!("/written/{k}")))
        .sum();
    assert_eq!(
        written,
        n("/rows/valid"),
        "inserted + updated + unchanged = valid: {report}"
    );
}

/// The current snapshot record (`chute_snapshots.current`) of `source` in `products`, if one was
/// committed.
pub async fn current_snapshot(source: &str) -> Option<bson::Document> {
    stack()
        .database()
        .await
        .collection::<bson::Document>("chute_snapshots")
        .find_one(bson::doc! {"_id": format!("products/{source}")})
        .await
        .unwrap()
        .and_then(|m| m.get_document("current").ok().cloned())
}

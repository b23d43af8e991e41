//! A real headless Chromium (Debian's `chromium`), driven over WebDriver by
//! `chromedriver` through the fantoccini client, inside a lab namespace.
//!
//! The driver runs on a thread of its own that first enters the namespace:
//! chromedriver is started from that thread, so it and the browser it starts
//! live in the namespace, and the thread's current-thread tokio runtime makes
//! every connection to chromedriver from there too. Tests call the blocking
//! methods below; dropping a [`Browser`] ends the WebDriver session, stops
//! chromedriver and removes the browser's profile directory.

use std::{
    future::Future,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU16, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use fantoccini::{error::CmdError, Client, ClientBuilder, Locator};
use serde_json::Value;

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &Client) + Send>;

/// chromedriver's port inside the namespace; one per browser of this process.
static NEXT_PORT: AtomicU16 = AtomicU16::new(9515);

/// Flags for Chromium as root on a machine without a network or a display:
/// no sandbox (root), no GPU, and none of the background connections a closed
/// network refuses at every start.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
];

pub struct Browser {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    base: String,
    artifacts: PathBuf,
    name: String,
}

/// Where screenshots go: `HEADROOM_TEST_ARTIFACTS`, or `target/test-artifacts`.
pub fn artifacts_dir(test: &str) -> PathBuf {
    let root = std::env::var_os("HEADROOM_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts"));
    let dir = root.join(test);
    std::fs::create_dir_all(&dir).expect("create the artifacts directory");
    dir
}

impl Browser {
    /// Starts chromedriver and a browser session in namespace `ns`, for pages
    /// under `base` (e.g. `http://127.0.0.1:7948`). `name` prefixes the
    /// screenshots written to `artifacts`.
    pub fn start(ns: &str, base: &str, name: &str, artifacts: &Path) -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver \
                 (scripts/install-deps.sh does)"
            );
        }
        let netns = std::fs::File::open(format!("/run/netns/{ns}"))
            .unwrap_or_else(|e| panic!("open namespace {ns}: {e}"));
        let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let profile = std::env::temp_dir().join(format!(
            "headroom-chromium-{}-{name}-{port}",
            std::process::id()
        ));
        let log = artifacts.join(format!("{name}-chromedriver.log"));
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name(format!("browser-{name}"))
            .spawn(move || {
                let r = nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns: {e}"))
                    .and_then(|()| Session::open(port, &profile, &log));
                let session = match r {
                    Ok(s) => {
                        let _ = ready.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&session.rt, &session.client);
                }
                session.close();
            })
            .expect("spawn the browser thread");
        match started.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("starting the browser: {e}"),
            Err(_) => panic!("the browser thread died while starting"),
        }
        Browser {
            jobs: Some(jobs),
            thread: Some(thread),
            base: base.to_string(),
            artifacts: artifacts.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// Runs `f` with the WebDriver client on the browser's thread.
    pub fn run<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, CmdError>>,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |rt, c| {
            let _ = tx.send(rt.block_on(f(c.clone())).map_err(|e| e.to_string()));
        });
        self.jobs
            .as_ref()
            .expect("browser running")
            .send(job)
            .expect("browser thread alive");
        match rx.recv() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("browser {}: {what}: {e}", self.name),
            Err(_) => panic!("browser {}: {what}: the browser thread died", self.name),
        }
    }

    /// Opens `path` (under the base URL) and waits for the page to load.
    pub fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.run(&format!("open {url}"), move |c| async move {
            c.goto(&url).await
        })
    }

    /// Waits up to `timeout` for an element matching `css`.
    pub fn wait_for(&self, css: &str, timeout: Duration) {
        let sel = css.to_string();
        self.run(&format!("wait for {css}"), move |c| async move {
            c.wait()
                .at_most(timeout)
                .for_element(Locator::Css(&sel))
                .await
                .map(|_| ())
        })
    }

    /// Types `text` into the element matching `css`, as a user would.
    pub fn type_into(&self, css: &str, text: &str) {
        let (sel, text) = (css.to_string(), text.to_string());
        self.run(&format!("type into {css}"), move |c| async move {
            let e = c.find(Locator::Css(&sel)).await?;
            e.clear().await?;
            e.send_keys(&text).await
        })
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        let sel = css.to_string();
        self.run(&format!("click {css}"), move |c| async move {
            c.find(Locator::Css(&sel)).await?.click().await
        })
    }

    /// Runs `script` in the page (`arguments[i]` are `args`); its return value.
    pub fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        let s = script.to_string();
        self.run(&format!("script {script}"), move |c| async move {
            c.execute(&s, args).await
        })
    }

    /// Runs an asynchronous `script`, which calls `done(value)` when finished.
    pub fn eval_async(&self, script: &str, args: Vec<Value>) -> Value {
        let s = format!("const done = arguments[arguments.length - 1]; {script}");
        self.run(&format!("async script {script}"), move |c| async move {
            c.execute_async(&s, args).await
        })
    }

    /// `fetch(path, init)` from the page (its cookies, its origin): the HTTP
    /// status. `init` is a JavaScript object literal.
    pub fn fetch_status(&self, path: &str, init: &str) -> u16 {
        let v = self.eval_async(
            &format!(
                "fetch(arguments[0], {init}).then(r => done(r.status), e => done(String(e)));"
            ),
            vec![Value::from(path)],
        );
        v.as_u64()
            .unwrap_or_else(|| panic!("fetch {path}: {v}"))
            .try_into()
            .unwrap()
    }

    /// Writes a screenshot of the page as `<name>-<what>.png`; its path.
    pub fn screenshot(&self, what: &str) -> PathBuf {
        let png = self.run(&format!("screenshot {what}"), |c| async move {
            c.screenshot().await
        });
        let path = self.artifacts.join(format!("{}-{what}.png", self.name));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// chromedriver with one session, on the browser thread.
struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Session {
    fn open(port: u16, profile: &Path, log: &Path) -> Result<Session, String> {
        let _ = std::fs::remove_dir_all(profile);
        std::fs::create_dir_all(profile).map_err(|e| format!("profile dir: {e}"))?;
        let log_file = std::fs::File::create(log).map_err(|e| format!("driver log: {e}"))?;
        let mut driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("start chromedriver: {e}"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(st)) = driver.try_wait() {
                return Err(format!("chromedriver exited: {st} (log {})", log.display()));
            }
            if Instant::now() >= deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(format!(
                    "chromedriver did not listen on {addr} within 20 s (log {})",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt.block_on(async {
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://{addr}"))
                .await
        });
        match client {
            Ok(client) => Ok(Session {
                rt,
                client,
                driver,
                profile: profile.to_path_buf(),
            }),
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                Err(format!("new WebDriver session: {e}"))
            }
        }
    }

    fn close(mut self) {
        let _ = self.rt.block_on(self.client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

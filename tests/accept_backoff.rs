//! The accept loop out of file descriptors: it backs off (counting
//! `accept_errors`) instead of dying or spinning, sessions already open keep
//! being served, and once descriptors are free again the connection that waited
//! in the kernel's backlog is welcomed and served. Its own test binary with a
//! single test: `setrlimit` and exhausting descriptors affect the whole process.

use std::fs::File;
use std::sync::atomic::Ordering;

use framework::client::Client;
use framework::dispatch::Body;
use framework::App;
use framework_tests::{client, eventually, start, url, DEADLINE};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors left free above those open when the limit is lowered (all of them
/// are then taken by `/dev/null` handles, but fewer files to open).
const MARGIN: u64 = 64;

/// Holds the process out of descriptors; dropping it (also on a failed
/// assertion) frees them and restores the soft limit.
struct Exhausted {
    files: Vec<File>,
    soft: u64,
    hard: u64,
}

impl Exhausted {
    /// Lowers the soft limit to what is open plus [`MARGIN`] and opens `/dev/null`
    /// until `EMFILE`.
    fn new() -> Exhausted {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let open = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .count() as u64;
        let low = (open + MARGIN).min(hard);
        setrlimit(Resource::RLIMIT_NOFILE, low, hard).expect("lower RLIMIT_NOFILE");
        let mut exhausted = Exhausted {
            files: Vec::new(),
            soft,
            hard,
        };
        loop {
            match File::open("/dev/null") {
                Ok(f) => exhausted.files.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(24), "expected EMFILE, got {e}");
                    break;
                }
            }
            assert!(
                exhausted.files.len() < 100_000,
                "the lowered limit did not take"
            );
        }
        exhausted
    }

    /// Frees exactly one descriptor.
    fn free_one(&mut self) {
        self.files.pop().expect("at least one descriptor was taken");
    }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        self.files.clear();
        let _ = setrlimit(Resource::RLIMIT_NOFILE, self.soft, self.hard);
    }
}

#[tokio::test]
async fn the_server_serves_again_once_descriptors_are_free() {
    let server = start(App::new().register_custom_handler(200, |Body(b): Body| b)).await;
    let metrics = server.node().metrics();
    // A session opened before: it needs no new descriptor to be served.
    let bystander = client(&server).await;
    bystander.ping().await.unwrap();
    let url = url(&server);
    assert_eq!(metrics.accept_errors.load(Ordering::SeqCst), 0);

    let mut exhausted = Exhausted::new();
    assert!(File::open("/dev/null").is_err(), "out of descriptors");
    // One free descriptor: the client's socket. Its TCP handshake completes in
    // the kernel's backlog, but the server cannot accept it.
    exhausted.free_one();
    let waiting = tokio::spawn(async move { Client::connect(&url).await });
    eventually("the accept loop failing and retrying", DEADLINE, || {
        metrics.accept_errors.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(
        !waiting.is_finished(),
        "the client must not be welcomed while the server is out of descriptors: {:?}",
        waiting.await
    );
    // Open sessions are still served meanwhile.
    bystander.ping().await.unwrap();
    let r = bystander.request(200, b"still here").await.unwrap();
    assert_eq!(&r.payload()[..], b"still here");
    assert!(!waiting.is_finished(), "still not welcomed");

    // Descriptors free again (and the limit restored): the waiting client is
    // accepted, welcomed and served, and so is a new one.
    drop(exhausted);
    let waited = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("welcomed once descriptors are free")
        .expect("the client task")
        .expect("the waiting client connects");
    let r = waited.request(200, b"served again").await.unwrap();
    assert_eq!(&r.payload()[..], b"served again");
    let fresh = client(&server).await;
    fresh.ping().await.unwrap();
    assert_eq!(server.node().hub().session_count(), 3);
    let errors = metrics.accept_errors.load(Ordering::SeqCst);
    assert!(errors >= 3, "accept_errors counts the failures: {errors}");
    // Backing off: a loop retrying at once would count hundreds of thousands.
    assert!(
        errors < 1_000,
        "the accept loop spun: {errors} failed accepts"
    );
    server.shutdown().await;
}

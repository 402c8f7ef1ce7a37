//! A loopback load benchmark: what `AfterLayer`, `#[with_after]` and a 20 ms task in
//! `after!` cost a real server, next to a plain handler and a hand-written
//! `tokio::spawn`. No external load tool.
//!
//! One process serves the app with `axum::serve` on 127.0.0.1 and drives it with
//! hyper HTTP/1.1 clients: one keep-alive connection per worker task, each sending
//! its next request as soon as the previous response body has been read. The variants
//! run in alternation (A B C D E F G H, A D G B E H C F, ...) so they share the machine's
//! noise, first at 4 connections (not saturated), then at 64 (saturated). The slices
//! are short (0.25 s) and many (20 rounds): on a shared machine, whose speed drifts
//! over seconds, long slices give each variant a different share of slow periods,
//! while short ones spread the drift evenly. Between two variants the runtime is
//! left to drain, so one variant's tasks never run during another's measurement.
//! Each variant's CPU time per request (the whole process, server and clients) is
//! measured too: it does not trade off against latency the way throughput does.
//!
//! ```text
//! cargo run --release --no-default-features --example load
//! LOAD_SECONDS=0.5 LOAD_ROUNDS=40 LOAD_CONNECTIONS=4,64 cargo run --release --no-default-features --example load
//! cargo run --release --no-default-features --example load -- 0.25 20 4,64  # seconds per round, rounds, connections
//! LOAD_MAX_CONCURRENCY=4096 cargo run --release --no-default-features --example load
//! LOAD_VARIANTS=/with-after,/spawn cargo run --release --no-default-features --example load  # some variants
//! cargo run --release --no-default-features --example load -- isolation 1 5  # seconds per round, rounds[, background req/s]
//! ```
//!
//! `isolation` runs another benchmark instead (`load/isolation.rs`): the latency of
//! unrelated requests under a saturating load whose requests each leave about 1 ms
//! of CPU as after work, against a no-op task, with and without `dedicated_threads`.
//!
//! `serve` only serves the variants' routes, for an external load tool, and prints
//! `listening on http://127.0.0.1:PORT`; it shuts down on Ctrl-C or SIGTERM and
//! prints the runtime's counts. `benches/wrk.sh` drives it with wrk:
//!
//! ```text
//! cargo run --release --no-default-features --example load -- serve [PORT]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use after_runtime::{AfterLayer, AfterRuntime, Builder as AfterRuntimeBuilder, after, with_after};
use after_workspace::handlers::{after_noop, plain, spawn_noop, with_after_noop};
use after_workspace::{TestServer, process};
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[path = "load/isolation.rs"]
mod isolation;

/// The work the 20 ms variants do, inline or after the response.
const WORK: Duration = Duration::from_millis(20);

/// A variant: its name, the path that serves it, and what it is compared with.
struct Variant {
    name: &'static str,
    path: &'static str,
}

const VARIANTS: [Variant; 8] = [
    Variant {
        name: "plain",
        path: "/plain",
    },
    Variant {
        name: "plain + AfterLayer",
        path: "/layer",
    },
    Variant {
        name: "#[with_after] + 1 no-op after!",
        path: "/with-after",
    },
    Variant {
        name: "manual tokio::spawn no-op",
        path: "/spawn",
    },
    Variant {
        name: "20 ms inline",
        path: "/inline-20ms",
    },
    Variant {
        name: "20 ms in after!",
        path: "/after-20ms",
    },
    // `after()` called by hand in a plain handler: the macro's share of the cost is
    // the difference from `#[with_after]`.
    Variant {
        name: "after() + 1 no-op task",
        path: "/after-fn",
    },
    // The hand-written spawn under the same `AfterLayer` as `#[with_after]`: the
    // stack of an application that uses both, so the pair compares the task alone.
    Variant {
        name: "manual tokio::spawn no-op + AfterLayer",
        path: "/layer-spawn",
    },
];

const PLAIN: usize = 0;
const WITH_AFTER: usize = 2;
const SPAWN: usize = 3;
const INLINE_20MS: usize = 4;
const AFTER_20MS: usize = 5;
const LAYER_SPAWN: usize = 7;

async fn inline_20ms() -> &'static str {
    tokio::time::sleep(WORK).await;
    "ok"
}

#[with_after]
async fn after_20ms() -> &'static str {
    after! {
        tokio::time::sleep(WORK).await;
    }
    "ok"
}

fn app(runtime: &AfterRuntime) -> Router {
    let layer = AfterLayer::new(runtime.clone());
    Router::new()
        .route("/plain", get(plain))
        .route("/layer", get(plain).layer(layer.clone()))
        .route("/with-after", get(with_after_noop).layer(layer.clone()))
        .route("/spawn", get(spawn_noop))
        .route("/layer-spawn", get(spawn_noop).layer(layer.clone()))
        .route("/after-fn", get(after_noop).layer(layer.clone()))
        .route("/inline-20ms", get(inline_20ms))
        .route("/after-20ms", get(after_20ms).layer(layer.clone()))
}

/// What one worker saw in one run: response latencies in microseconds, and failures.
#[derive(Default)]
struct Sample {
    latencies_us: Vec<u32>,
    errors: u64,
}

/// One variant at one connection count, over all rounds.
#[derive(Default)]
struct Totals {
    latencies_us: Vec<u32>,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    /// The most after tasks pending at once, sampled every 10 ms.
    peak_pending: u64,
    /// The highest resident memory seen during the variant's runs, in KiB.
    peak_rss_kib: u64,
    /// Registrations refused by the runtime (overload or shutdown).
    rejected: u64,
    /// Requests per second of each round, to compare round by round.
    per_round: Vec<f64>,
    /// Median latency of each round, in microseconds.
    per_round_p50_us: Vec<f64>,
    /// CPU time the whole process (server, runtime and clients) used while the
    /// variant ran.
    cpu: Duration,
}

impl Totals {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Process CPU time per request, in microseconds: what a variant costs when the
    /// machine is saturated, independent of how throughput and latency trade off.
    fn cpu_per_request_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests as f64
    }

    fn percentile_us(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        percentile(&self.latencies_us, p)
    }
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank; NaN if it is empty.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    f64::from(sorted[(p * (sorted.len() - 1) as f64).round() as usize])
}

type Sender = SendRequest<Empty<Bytes>>;

/// Sends one `GET uri` on `sender` and reads the whole body: whether the status was
/// a success, and the time from sending to the body's end. `None` if the connection
/// failed.
async fn get_once(
    sender: &mut Sender,
    uri: &http::Uri,
    authority: &str,
) -> Option<(bool, Duration)> {
    let request = http::Request::get(uri.clone())
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let start = Instant::now();
    sender.ready().await.ok()?;
    let response = sender.send_request(request).await.ok()?;
    let ok = response.status().is_success();
    response.into_body().collect().await.ok()?;
    Some((ok, start.elapsed()))
}

/// Adds one outcome of [`get_once`] to `sample`; returns whether the connection is
/// still usable.
fn record(sample: &mut Sample, outcome: Option<(bool, Duration)>) -> bool {
    match outcome {
        Some((true, took)) => {
            let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
            sample.latencies_us.push(us);
        }
        Some((false, _)) => sample.errors += 1,
        None => {
            sample.errors += 1;
            return false;
        }
    }
    true
}

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("connection error: {err}");
        }
    });
    sender
}

/// Sends requests for `path` on `sender`, one at a time, until `deadline`.
async fn worker(
    mut sender: Sender,
    authority: String,
    path: &'static str,
    deadline: Instant,
) -> (Sender, Sample) {
    let mut sample = Sample::default();
    let uri: http::Uri = format!("http://{authority}{path}").parse().expect("uri");
    while Instant::now() < deadline {
        let outcome = get_once(&mut sender, &uri, &authority).await;
        if !record(&mut sample, outcome) {
            break; // The connection is gone; no point spinning on it.
        }
    }
    (sender, sample)
}

/// Runs every sender against `path` for `duration`; returns the senders, the samples
/// merged, and the wall time of the run.
async fn run(
    senders: Vec<Sender>,
    authority: &str,
    path: &'static str,
    duration: Duration,
) -> (Vec<Sender>, Sample, Duration) {
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(worker(sender, authority.to_owned(), path, deadline)))
        .collect();
    let mut senders = Vec::with_capacity(workers.len());
    let mut merged = Sample::default();
    for worker in workers {
        let (sender, sample) = worker.await.expect("worker panicked");
        senders.push(sender);
        merged.latencies_us.extend(sample.latencies_us);
        merged.errors += sample.errors;
    }
    (senders, merged, start.elapsed())
}

/// Samples pending tasks and resident memory every 10 ms until `stop` fires; returns
/// the peaks.
async fn sample_peaks(
    runtime: AfterRuntime,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (u64, u64) {
    let (mut pending, mut rss) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        pending = pending.max(runtime.stats().pending);
        rss = rss.max(process::status_kib("VmRSS:").unwrap_or(0));
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return (pending, rss),
        }
    }
}

/// Waits until no after task is pending or running, so the next variant runs on a
/// quiet runtime.
async fn settle(runtime: &AfterRuntime) {
    loop {
        let stats = runtime.stats();
        if stats.pending + stats.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let closing work (timers, wake-ups) finish too.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The order of `variants` in round `round`: every round steps through them by a
/// different stride coprime with their count, from a different start, so each
/// variant follows each other one over the rounds. (A rotation alone keeps every
/// variant after the same neighbour.)
fn round_order(variants: &[usize], round: usize) -> Vec<usize> {
    let n = variants.len();
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let strides: Vec<usize> = (1..n.max(2)).filter(|&s| gcd(s, n) == 1).collect();
    let stride = strides[round % strides.len()];
    let start = (round / strides.len()) % n.max(1);
    (0..n).map(|k| variants[(start + k * stride) % n]).collect()
}

struct Settings {
    seconds: f64,
    rounds: usize,
    connections: Vec<usize>,
    max_concurrency: usize,
    /// Indices into `VARIANTS` to run; plain is always among them.
    variants: Vec<usize>,
}

impl Settings {
    /// `LOAD_SECONDS` / `LOAD_ROUNDS` / `LOAD_CONNECTIONS`, or the same three as
    /// positional arguments; `LOAD_MAX_CONCURRENCY` for the runtime (default 256, the
    /// library's default); `LOAD_VARIANTS` to run only some variants, by path
    /// (`/with-after,/spawn`; plain always runs, the ratios need it).
    fn from_env() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let pick = |arg: usize, var: &str| {
            args.get(arg)
                .cloned()
                .or_else(|| std::env::var(var).ok())
                .filter(|v| !v.is_empty())
        };
        let seconds = pick(0, "LOAD_SECONDS").map_or(0.25, |v| v.parse().expect("seconds"));
        let rounds = pick(1, "LOAD_ROUNDS").map_or(20, |v| v.parse().expect("rounds"));
        let connections = pick(2, "LOAD_CONNECTIONS").map_or(vec![4, 64], |v| {
            v.split(',')
                .map(|c| c.trim().parse().expect("connections"))
                .collect()
        });
        let max_concurrency = std::env::var("LOAD_MAX_CONCURRENCY")
            .ok()
            .map_or(AfterRuntimeBuilder::DEFAULT_MAX_CONCURRENCY, |v| {
                v.parse().expect("max concurrency")
            });
        let variants = match std::env::var("LOAD_VARIANTS") {
            Ok(paths) if !paths.is_empty() => {
                let paths: Vec<&str> = paths.split(',').map(str::trim).collect();
                (0..VARIANTS.len())
                    .filter(|&i| i == PLAIN || paths.contains(&VARIANTS[i].path))
                    .collect()
            }
            _ => (0..VARIANTS.len()).collect(),
        };
        Settings {
            seconds,
            rounds,
            connections,
            max_concurrency,
            variants,
        }
    }
}

/// Serves the variants' routes on `port` (any free one for 0) until Ctrl-C or
/// SIGTERM, then drains the runtime and prints its counts.
async fn serve(port: u16) {
    let runtime = AfterRuntime::builder().max_pending(100_000).build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    println!("listening on http://{addr}");
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app(&runtime))
        .with_graceful_shutdown(stop)
        .await
        .expect("serve");
    let report = runtime.shutdown(Duration::from_secs(10)).await;
    println!("{report}");
}

#[tokio::main]
async fn main() {
    after_workspace::note_metrics_feature("load");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("isolation") {
        let seconds = args.get(1).map_or(1.0, |v| v.parse().expect("seconds"));
        let rounds = args.get(2).map_or(5, |v| v.parse().expect("rounds"));
        let rate = args
            .get(3)
            .map(|v| v.parse().expect("background requests per second"));
        isolation::run(seconds, rounds, rate).await;
        return;
    }
    if args.first().map(String::as_str) == Some("serve") {
        let port = args.get(1).map_or(0, |v| v.parse().expect("port"));
        serve(port).await;
        return;
    }
    let settings = Settings::from_env();
    let duration = Duration::from_secs_f64(settings.seconds);
    let runtime = AfterRuntime::builder()
        .max_concurrency(settings.max_concurrency)
        .max_pending(100_000)
        .build();
    let server = TestServer::start(app(&runtime)).await.expect("server");
    let authority = server.addr.to_string();
    let workers = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# after-runtime loopback load\n\n{} s per variant per round, {} rounds, connections {:?}, \
         HTTP/1.1 keep-alive, one tokio multi-thread runtime ({workers} workers) for server \
         and clients, {} available cores; AfterRuntime max_concurrency {}, max_pending 100,000\n",
        settings.seconds, settings.rounds, settings.connections, workers, settings.max_concurrency
    );

    let mut results: BTreeMap<(usize, usize), Totals> = BTreeMap::new();
    for &connections in &settings.connections {
        let mut senders = Vec::with_capacity(connections);
        for _ in 0..connections {
            senders.push(connect(server.addr).await);
        }
        // Warm-up: every variant once, unrecorded.
        let warm_up = duration.max(Duration::from_millis(500));
        for &index in &settings.variants {
            let (back, _, _) = run(senders, &authority, VARIANTS[index].path, warm_up).await;
            senders = back;
            settle(&runtime).await;
        }
        for round in 0..settings.rounds {
            // No variant always runs right after the same one: a variant's tail of
            // work or cache state (thousands of 20 ms tasks draining) would bias it.
            let order = round_order(&settings.variants, round);
            for &index in &order {
                let variant = &VARIANTS[index];
                let rejected_before = runtime.stats().rejected;
                let (stop, stopped) = tokio::sync::oneshot::channel();
                let sampler = tokio::spawn(sample_peaks(runtime.clone(), stopped));
                let cpu_before = process::cpu_time();
                let (back, sample, elapsed) =
                    run(senders, &authority, variant.path, duration).await;
                let cpu = process::cpu_time().saturating_sub(cpu_before);
                senders = back;
                let _ = stop.send(());
                let (peak_pending, peak_rss_kib) = sampler.await.expect("sampler");
                let totals = results.entry((connections, index)).or_default();
                totals.peak_pending = totals.peak_pending.max(peak_pending);
                totals.peak_rss_kib = totals.peak_rss_kib.max(peak_rss_kib);
                totals.rejected += runtime.stats().rejected - rejected_before;
                let requests = sample.latencies_us.len() as u64;
                totals.requests += requests;
                totals.errors += sample.errors;
                totals.elapsed += elapsed;
                totals.cpu += cpu;
                totals
                    .per_round
                    .push(requests as f64 / elapsed.as_secs_f64());
                let mut latencies = sample.latencies_us;
                latencies.sort_unstable();
                totals.per_round_p50_us.push(
                    latencies
                        .get(latencies.len() / 2)
                        .map_or(f64::NAN, |&v| f64::from(v)),
                );
                totals.latencies_us.extend(latencies);
                eprintln!(
                    "conns {connections:>3} round {} {:<32} {:>9.0} req/s",
                    round + 1,
                    variant.name,
                    requests as f64 / elapsed.as_secs_f64()
                );
                settle(&runtime).await;
            }
        }
        drop(senders);
    }

    server.stop().await.expect("server stopped");
    let report = runtime.shutdown(Duration::from_secs(30)).await;

    print_table(&mut results, &settings);
    println!(
        "\nAfterRuntime final stats (after shutdown): {:?}",
        report.stats
    );
    println!("Shutdown report: {report}");
}

fn print_table(results: &mut BTreeMap<(usize, usize), Totals>, settings: &Settings) {
    println!(
        "| variant | conns | req/s | p50 | p99 | req/s vs plain | p50 vs plain | p99 vs plain | CPU/req | CPU/req vs plain | \
         per-round req/s vs plain: median (min–max) | per-round p50 vs plain: median | peak pending | peak RSS | rejected | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &connections in &settings.connections {
        let mut plain = results.remove(&(connections, PLAIN)).unwrap_or_default();
        let (plain_rps, plain_p50, plain_p99, plain_cpu) = (
            plain.throughput(),
            plain.percentile_us(0.50),
            plain.percentile_us(0.99),
            plain.cpu_per_request_us(),
        );
        let plain_rounds = plain.per_round.clone();
        let plain_round_p50 = plain.per_round_p50_us.clone();
        results.insert((connections, PLAIN), plain);
        let mut summary = BTreeMap::new();
        for (index, variant) in VARIANTS.iter().enumerate() {
            let Some(totals) = results.get_mut(&(connections, index)) else {
                continue;
            };
            let (rps, p50, p99, cpu) = (
                totals.throughput(),
                totals.percentile_us(0.50),
                totals.percentile_us(0.99),
                totals.cpu_per_request_us(),
            );
            let round_ratios: Vec<f64> = totals
                .per_round
                .iter()
                .zip(&plain_rounds)
                .map(|(v, p)| v / p)
                .collect();
            let p50_ratios: Vec<f64> = totals
                .per_round_p50_us
                .iter()
                .zip(&plain_round_p50)
                .map(|(v, p)| v / p)
                .collect();
            let min = round_ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let max = round_ratios
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            println!(
                "| {} | {connections} | {rps:.0} | {} | {} | {:.3} | {:.3} | {:.3} | {cpu:.1} µs | {:.3} | {:.3} ({min:.3}–{max:.3}) | {:.3} | {} | {:.0} MiB | {} | {} |",
                variant.name,
                format_us(p50),
                format_us(p99),
                rps / plain_rps,
                p50 / plain_p50,
                p99 / plain_p99,
                cpu / plain_cpu,
                median(round_ratios),
                median(p50_ratios),
                totals.peak_pending,
                totals.peak_rss_kib as f64 / 1024.0,
                totals.rejected,
                totals.errors,
            );
            summary.insert(index, (rps, p50, p99));
        }
        // Pairs compared directly, besides each variant against plain: the macro
        // against the spawn a user would write by hand (with no layer, and under the
        // same `AfterLayer`), and the 20 ms task against the
        // same handler with no work in its `after!` (does the work itself delay the
        // response?) and against the same work inline.
        let pairs = [
            ("#[with_after] vs manual spawn", WITH_AFTER, SPAWN),
            (
                "#[with_after] vs manual spawn, both under AfterLayer",
                WITH_AFTER,
                LAYER_SPAWN,
            ),
            ("20 ms in after! vs no-op after!", AFTER_20MS, WITH_AFTER),
            ("20 ms in after! vs 20 ms inline", AFTER_20MS, INLINE_20MS),
        ];
        for (name, a, b) in pairs {
            if let (Some(a), Some(b)) = (summary.get(&a), summary.get(&b)) {
                println!(
                    "| {name} | {connections} | | | | {:.3} | {:.3} | {:.3} | | | | | | | | |",
                    a.0 / b.0,
                    a.1 / b.1,
                    a.2 / b.2,
                );
            }
        }
    }
    println!(
        "\nRatios: req/s ratio > 1 is faster than plain; latency ratio < 1 is faster. The \
         per-round columns compare each variant with the plain run of the same round, which \
         shares its noise; the other ratios use all rounds pooled. CPU/req is the whole \
         process's CPU time (server and clients) per request while the variant ran. \
         {} s per variant per round × {} rounds; latencies are from sending the request to \
         reading the whole body.",
        settings.seconds, settings.rounds
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}

fn format_us(us: f64) -> String {
    if us >= 1_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{us:.0} µs")
    }
}

//! The isolation benchmark: does CPU-heavy after work slow other requests down?
//!
//! A background load of `BACKGROUND` keep-alive connections sends requests at a fixed
//! rate, by default 1,250 a second per core: with about 1 ms of CPU left as after
//! work by each, that asks for more CPU than the cores have (at 1,000 a second per
//! core a run sits on the edge, and its rounds tip either way); the baseline leaves
//! nothing (a no-op task) at the same rate. Meanwhile one probe connection sends unrelated requests to
//! a plain handler, one at a time, and its latencies are recorded. Four variants, in
//! alternation round by round (each round in a different order):
//!
//! - serving runtime, no-op task: the baseline;
//! - serving runtime, 1 ms of CPU: tasks share the connections' workers;
//! - `dedicated_threads(1)`, no-op task;
//! - `dedicated_threads(1)`, 1 ms of CPU: the work runs on a thread of its own at
//!   `SCHED_IDLE` (Linux).
//!
//! The ratios are per round, each CPU variant against the no-op variant of the same
//! round (sharing its noise), then the median over rounds. The clients run on
//! threads of their own (the probe on one, the background on another), as a
//! separate load tool would, so they are not delayed by the server's tasks.
//!
//! Under a saturating load the `SCHED_IDLE` thread gets the CPU only when the
//! request path leaves it, so the after work waits; the table says how many tasks
//! completed per second and how many were refused (`max_pending`), so the price of
//! the latency is shown with it.

use std::time::{Duration, Instant};

use after_runtime::{AfterLayer, AfterRuntime, after};
use after_workspace::handlers::plain;
use after_workspace::{TestServer, process};
use axum::Router;
use axum::routing::get;

use super::{Sample, Sender, connect, get_once, median, percentile, record, round_order};

/// Background connections, sharing the rate: enough that a slow response on one
/// leaves the others sending.
const BACKGROUND: usize = 16;

/// One probe request every millisecond, whatever the latency of the last: a probe
/// that sent back to back would send most of its requests while the server is
/// quick, and miss the stalls it measures.
const PROBE_PERIOD: Duration = Duration::from_millis(1);

/// Waiting tasks each runtime holds at most: the rest are refused and counted, so a
/// starved `SCHED_IDLE` thread drains in about a second between variants.
const MAX_PENDING: usize = 1_000;

struct Variant {
    name: &'static str,
    /// The background load's path.
    path: &'static str,
    dedicated: bool,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "serving runtime, no-op task",
        path: "/noop",
        dedicated: false,
    },
    Variant {
        name: "serving runtime, 1 ms CPU task",
        path: "/cpu",
        dedicated: false,
    },
    Variant {
        name: "dedicated_threads(1), no-op task",
        path: "/dedicated/noop",
        dedicated: true,
    },
    Variant {
        name: "dedicated_threads(1), 1 ms CPU task",
        path: "/dedicated/cpu",
        dedicated: true,
    },
];

/// (CPU variant, its no-op baseline): the ratios printed.
const PAIRS: [(usize, usize); 3] = [(1, 0), (3, 2), (3, 0)];

/// Spins for about `iterations` rounds of a cheap mix; calibrated to ~1 ms of CPU.
fn burn(iterations: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.rotate_left(5) ^ i).wrapping_mul(0x5851_F42D_4C95_7F2D);
    }
    x
}

/// The iterations of `burn` that take about 1 ms of CPU on this machine, timed by
/// the process's CPU time (nothing else runs yet), so a busy machine does not skew
/// it the way wall time would.
fn calibrate() -> u64 {
    let mut iterations = 10_000;
    loop {
        let start = process::cpu_time();
        std::hint::black_box(burn(iterations));
        let took = process::cpu_time().saturating_sub(start);
        if took >= Duration::from_millis(20) {
            return (iterations as f64 * 1e-3 / took.as_secs_f64()) as u64;
        }
        iterations *= 2;
    }
}

fn app(shared: &AfterRuntime, dedicated: &AfterRuntime, iterations: u64) -> Router {
    let cpu = move || async move {
        // Refused past `max_pending`: counted, and the response goes out anyway.
        let _ = after(async move {
            std::hint::black_box(burn(iterations));
        });
        "ok"
    };
    let noop = || async {
        let _ = after(async {});
        "ok"
    };
    let on_shared = AfterLayer::new(shared.clone());
    let on_dedicated = AfterLayer::new(dedicated.clone());
    Router::new()
        .route("/probe", get(plain))
        .route("/noop", get(noop).layer(on_shared.clone()))
        .route("/cpu", get(cpu).layer(on_shared))
        .route("/dedicated/noop", get(noop).layer(on_dedicated.clone()))
        .route("/dedicated/cpu", get(cpu).layer(on_dedicated))
}

/// Sends requests for `path` on `sender`, one every `period` (or as soon as the
/// previous response is read, if later), until `deadline`.
async fn paced(
    mut sender: Sender,
    authority: String,
    path: &'static str,
    period: Duration,
    deadline: Instant,
) -> (Sender, Sample) {
    let mut sample = Sample::default();
    let uri: http::Uri = format!("http://{authority}{path}").parse().expect("uri");
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        let outcome = get_once(&mut sender, &uri, &authority).await;
        if !record(&mut sample, outcome) {
            break;
        }
    }
    (sender, sample)
}

/// One variant over all rounds.
#[derive(Default)]
struct Totals {
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    probes: usize,
    background: u64,
    completed: u64,
    rejected: u64,
    elapsed: Duration,
}

/// Waits until neither runtime has a task pending or running.
async fn settle(runtimes: [&AfterRuntime; 2]) {
    for runtime in runtimes {
        while {
            let stats = runtime.stats();
            stats.pending + stats.running > 0
        } {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Runs the benchmark: `seconds` per variant per round, `rounds` rounds, the
/// background at `rate` requests a second (default 1,250 per core).
pub(super) async fn run(seconds: f64, rounds: usize, rate: Option<f64>) {
    let duration = Duration::from_secs_f64(seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate = rate.unwrap_or(1_250.0 * cores as f64);
    let period = Duration::from_secs_f64(BACKGROUND as f64 / rate);
    let iterations = calibrate();
    let shared = AfterRuntime::builder().max_pending(MAX_PENDING).build();
    let dedicated = AfterRuntime::builder()
        .max_pending(MAX_PENDING)
        .dedicated_threads(1)
        .build();
    let server = TestServer::start(app(&shared, &dedicated, iterations))
        .await
        .expect("server");
    let addr = server.addr;
    let authority = addr.to_string();
    let client_runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("client runtime")
    };
    let (background_clients, probe_client) =
        (client_runtime("background"), client_runtime("probe"));
    let workers = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# after-runtime isolation: unrelated requests under CPU-heavy after work\n\n\
         {seconds} s per variant per round, {rounds} rounds; server: one tokio runtime of \
         {workers} workers ({workers} cores); background: {rate:.0} requests/s over \
         {BACKGROUND} HTTP/1.1 keep-alive connections, each request leaving a task of {iterations} \
         iterations (~1 ms of CPU) or a no-op; probe: 1 connection to a plain handler, one \
         request a millisecond; clients on threads of their own; max_pending {MAX_PENDING}\n"
    );

    let mut background: Vec<Sender> = Vec::new();
    for _ in 0..BACKGROUND {
        background.push(
            background_clients
                .spawn(connect(addr))
                .await
                .expect("connect"),
        );
    }
    let mut probe = vec![probe_client.spawn(connect(addr)).await.expect("connect")];

    let mut totals: Vec<Totals> = VARIANTS.iter().map(|_| Totals::default()).collect();
    let all: Vec<usize> = (0..VARIANTS.len()).collect();
    // Warm-up: every variant once, unrecorded.
    for round in 0..=rounds {
        for index in round_order(&all, round) {
            let variant = &VARIANTS[index];
            let runtime = if variant.dedicated {
                &dedicated
            } else {
                &shared
            };
            let before = runtime.stats();
            let deadline = Instant::now() + duration;
            let start = Instant::now();
            let load: Vec<_> = background
                .drain(..)
                .map(|sender| {
                    let authority = authority.clone();
                    background_clients.spawn(paced(
                        sender,
                        authority,
                        variant.path,
                        period,
                        deadline,
                    ))
                })
                .collect();
            let probing = probe_client.spawn(paced(
                probe.pop().expect("probe"),
                authority.clone(),
                "/probe",
                PROBE_PERIOD,
                deadline,
            ));
            let (sender, mut sample) = probing.await.expect("probe");
            probe.push(sender);
            let mut requests = 0;
            for worker in load {
                let (sender, sample) = worker.await.expect("background");
                requests += sample.latencies_us.len() as u64;
                background.push(sender);
            }
            let elapsed = start.elapsed();
            let after = runtime.stats();
            settle([&shared, &dedicated]).await;
            if round == 0 {
                continue;
            }
            sample.latencies_us.sort_unstable();
            let t = &mut totals[index];
            t.p50_us.push(percentile(&sample.latencies_us, 0.50));
            t.p99_us.push(percentile(&sample.latencies_us, 0.99));
            t.probes += sample.latencies_us.len();
            t.background += requests;
            t.completed += after.succeeded - before.succeeded;
            t.rejected += after.rejected - before.rejected;
            t.elapsed += elapsed;
            eprintln!(
                "round {round} {:<38} probe p50 {:>7.0} µs p99 {:>7.0} µs, background {:>6.0} req/s",
                variant.name,
                t.p50_us.last().unwrap(),
                t.p99_us.last().unwrap(),
                requests as f64 / elapsed.as_secs_f64(),
            );
        }
    }
    drop((background, probe));
    server.stop().await.expect("server stopped");
    shared.shutdown(Duration::from_secs(30)).await;
    dedicated.shutdown(Duration::from_secs(30)).await;
    background_clients.shutdown_background();
    probe_client.shutdown_background();

    println!(
        "| variant | probe p50 (median of rounds) | probe p99 (median of rounds) | probes | \
         background req/s | after tasks completed/s | refused (max_pending) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (variant, t) in VARIANTS.iter().zip(&totals) {
        let secs = t.elapsed.as_secs_f64();
        println!(
            "| {} | {:.0} µs | {:.0} µs | {} | {:.0} | {:.0} | {} |",
            variant.name,
            median(t.p50_us.clone()),
            median(t.p99_us.clone()),
            t.probes,
            t.background as f64 / secs,
            t.completed as f64 / secs,
            t.rejected,
        );
    }
    println!(
        "\n| 1 ms CPU after work vs a no-op task | p50 ratio | p99 ratio | per-round p50 ratios | per-round p99 ratios |"
    );
    println!("|---|---:|---:|---|---|");
    for (cpu, noop) in PAIRS {
        let ratios =
            |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a / b).collect() };
        let p50 = ratios(&totals[cpu].p50_us, &totals[noop].p50_us);
        let p99 = ratios(&totals[cpu].p99_us, &totals[noop].p99_us);
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "| {} vs {} | {:.2}x | {:.2}x | {} | {} |",
            VARIANTS[cpu].name,
            VARIANTS[noop].name,
            median(p50.clone()),
            median(p99.clone()),
            list(&p50),
            list(&p99),
        );
    }
    println!(
        "\nRatios are per round (the CPU variant against the no-op variant of the same \
         round), then the median over rounds. Targets with dedicated_threads(1): p50 ≤ 1.5x, \
         p99 ≤ 1.3x."
    );
}

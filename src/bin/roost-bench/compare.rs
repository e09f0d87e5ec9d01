//! `roost-bench compare`: the same scenarios against several brokers, in
//! one run, alternating, and the medians side by side.
//!
//! Each broker is a command (`{port}` and `{dir}` filled in, as for
//! `crash`), started fresh for every measurement, pinned to `--broker-cpus`
//! with `taskset`; the measurement is this program again, as a child process
//! pinned to `--bench-cpus`. Brokers take turns within each round (roost,
//! mosquitto, rumqttd, roost, ...) so that a noisy moment on the machine
//! does not fall on one broker only. For every scenario the table shows,
//! per broker, the median and range of each rate or latency column, the
//! broker's peak resident memory, where the scenario counts delivered
//! messages the broker's CPU time (user and system, all threads, from
//! `/proc/PID/stat`) per delivered message, and each broker's figure as a
//! ratio to the first broker's.
//!
//! Example (pinned, one core each):
//!
//! ```text
//! roost-bench compare --runs 3 --broker-cpus 0 --bench-cpus 1 \
//!   --broker 'roost=target/release/roost --listen 127.0.0.1:{port} --db {dir}/roost.db' \
//!   --broker 'mosquitto=sh -c "printf \"listener {port} 127.0.0.1\nallow_anonymous true\n\" > {dir}/m.conf; exec mosquitto -c {dir}/m.conf"' \
//!   --scenario 'fan-in --publishers 4 --qos 0 --messages 400000'
//! ```

use crate::crash::start_broker;
use std::process::Command;

#[derive(clap::Args, Clone)]
pub struct CompareArgs {
    /// NAME=COMMAND of a broker; repeat for each. The first is the one the
    /// ratios are taken against.
    #[arg(long = "broker", required = true)]
    brokers: Vec<String>,
    /// Scenario arguments as given to roost-bench (e.g. `fan-in --qos 1`);
    /// repeat for each. `{pid}` is replaced by the broker's pid.
    #[arg(long = "scenario", required = true)]
    scenarios: Vec<String>,
    /// Measurements per broker and scenario.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// CPUs for the broker (`taskset -c` list, e.g. `0`); empty: not pinned.
    #[arg(long, default_value = "")]
    broker_cpus: String,
    /// CPUs for the load generator (e.g. `1`); empty: not pinned.
    #[arg(long, default_value = "")]
    bench_cpus: String,
    /// Options for every measurement, before the scenario (e.g. `--window 500`).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    bench_args: String,
}

/// A fresh state directory for one broker start, removed afterwards.
struct StateDir(std::path::PathBuf);

impl StateDir {
    fn new(name: &str) -> Result<StateDir, String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "roost-bench-compare-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(StateDir(dir))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One measurement: the child's header and row cells, the broker's peak
/// RSS, and the CPU time the broker used during it.
struct Measurement {
    header: Vec<String>,
    cells: Vec<String>,
    peak_rss_mib: Option<f64>,
    cpu_seconds: Option<f64>,
}

/// User and system CPU time of a process and all its threads so far, from
/// `/proc/PID/stat` (in clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn pinned(cpus: &str, command: &str) -> String {
    if cpus.is_empty() {
        command.to_string()
    } else {
        format!("taskset -c {cpus} {command}")
    }
}

async fn measure(
    args: &CompareArgs,
    name: &str,
    command: &str,
    scenario: &str,
) -> Result<Measurement, String> {
    let dir = StateDir::new(name)?;
    let log = dir.0.join("broker.log");
    let broker = start_broker(&pinned(&args.broker_cpus, command), &dir.0, &log).await?;
    let pid = broker.child.id();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = if args.bench_cpus.is_empty() {
        Command::new(&me)
    } else {
        let mut c = Command::new("taskset");
        c.args(["-c", &args.bench_cpus]).arg(&me);
        c
    };
    child
        .arg("--host")
        .arg(broker.addr.to_string())
        .args(["--label", name, "--header"])
        .args(args.bench_args.split_whitespace())
        .args(
            scenario
                .replace("{pid}", &pid.to_string())
                .split_whitespace(),
        );
    let cpu_before = cpu_seconds(pid);
    let output = tokio::task::spawn_blocking(move || child.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot run {}: {e}", me.display()))?;
    let peak_rss_mib = peak_rss_mib(pid);
    let cpu_seconds = cpu_seconds(pid)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    broker.kill();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    match (output.status.success(), rows.as_slice()) {
        (true, [header, .., row]) => Ok(Measurement {
            header: cells(header),
            cells: cells(row),
            peak_rss_mib,
            cpu_seconds,
        }),
        _ => Err(format!(
            "{name}, `{scenario}`: the measurement failed ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

fn median_and_range(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((median, v[0], v[v.len() - 1]))
}

/// Columns worth comparing: rates, latencies and memory per connection.
fn compared(column: &str) -> bool {
    column.contains("/s")
        || column.contains("µs")
        || column.contains("per connection")
        || column.contains("per offline session")
}

fn short(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

pub async fn run(args: &CompareArgs) -> i32 {
    let brokers: Vec<(String, String)> = match args
        .brokers
        .iter()
        .map(|b| {
            b.split_once('=')
                .map(|(n, c)| (n.trim().to_string(), c.trim().to_string()))
                .ok_or_else(|| format!("--broker {b:?}: expected NAME=COMMAND"))
        })
        .collect::<Result<_, _>>()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("compare: {e}");
            return 2;
        }
    };
    println!(
        "brokers pinned to CPUs [{}], load generator to [{}]; {} alternating runs; medians (min–max)",
        args.broker_cpus, args.bench_cpus, args.runs
    );
    let mut failed = false;
    for scenario in &args.scenarios {
        // results[broker] = measurements
        let mut results: Vec<Vec<Measurement>> = brokers.iter().map(|_| Vec::new()).collect();
        for round in 0..args.runs {
            for (b, (name, command)) in brokers.iter().enumerate() {
                match measure(args, name, command, scenario).await {
                    Ok(m) => results[b].push(m),
                    Err(e) => {
                        eprintln!("compare: round {}: {e}", round + 1);
                        failed = true;
                    }
                }
            }
        }
        let Some(header) = results.iter().flatten().map(|m| m.header.clone()).next() else {
            continue;
        };
        let columns: Vec<usize> = (0..header.len())
            .filter(|&i| compared(&header[i]))
            .collect();
        println!();
        println!("### {scenario}");
        println!();
        let mut head = String::from("| broker | runs |");
        for &i in &columns {
            head.push_str(&format!(" {} |", header[i]));
        }
        // Broker CPU per delivered message, where the scenario counts them.
        let delivered = header.iter().position(|h| h == "delivered");
        let cpu_per_msg = |m: &Measurement| -> Option<f64> {
            let n: f64 = m.cells.get(delivered?)?.parse().ok()?;
            let cpu = m.cpu_seconds?;
            (n > 0.0).then(|| cpu * 1e6 / n)
        };
        let with_cpu = delivered.is_some();
        head.push_str(" peak RSS MiB | lost or missing |");
        if with_cpu {
            head.push_str(" broker CPU µs per msg |");
        }
        println!("{head}");
        println!(
            "{}",
            "|---".repeat(columns.len() + 4 + usize::from(with_cpu)) + "|"
        );
        // stats[broker][column]: median, min, max over the runs.
        let stats: Vec<Vec<Option<(f64, f64, f64)>>> = results
            .iter()
            .map(|ms| {
                columns
                    .iter()
                    .map(|&i| {
                        median_and_range(
                            ms.iter()
                                .filter_map(|m| m.cells.get(i)?.parse().ok())
                                .collect(),
                        )
                    })
                    .collect()
            })
            .collect();
        for (b, (name, _)) in brokers.iter().enumerate() {
            let ms = &results[b];
            let mut row = format!("| {name} | {} |", ms.len());
            for stat in &stats[b] {
                match stat {
                    Some((med, lo, hi)) => row.push_str(&format!(
                        " {} ({}–{}) |",
                        short(*med),
                        short(*lo),
                        short(*hi)
                    )),
                    None => row.push_str(" - |"),
                }
            }
            match median_and_range(ms.iter().filter_map(|m| m.peak_rss_mib).collect()) {
                Some((med, _, hi)) => row.push_str(&format!(" {med:.1} (max {hi:.1}) |")),
                None => row.push_str(" - |"),
            }
            // Loss: the "missing" column where the scenario has one.
            let missing = header.iter().position(|h| h == "missing");
            let lost: Vec<String> = ms
                .iter()
                .filter_map(|m| m.cells.get(missing?).cloned())
                .collect();
            row.push_str(&format!(
                " {} |",
                if lost.is_empty() {
                    "-".into()
                } else {
                    lost.join(", ")
                }
            ));
            if with_cpu {
                match median_and_range(ms.iter().filter_map(cpu_per_msg).collect()) {
                    Some((med, lo, hi)) => row.push_str(&format!(" {med:.2} ({lo:.2}–{hi:.2}) |")),
                    None => row.push_str(" - |"),
                }
            }
            println!("{row}");
        }
        // Ratios against the first broker, per compared column.
        for (b, (name, _)) in brokers.iter().enumerate().skip(1) {
            let ratios: Vec<String> = columns
                .iter()
                .enumerate()
                .filter_map(|(k, &i)| {
                    let (ours, theirs) = (stats[0][k]?.0, stats[b][k]?.0);
                    (theirs > 0.0).then(|| format!("{} {:.2}×", header[i], ours / theirs))
                })
                .chain(with_cpu.then(|| {
                    let cpu = |b: usize| {
                        median_and_range(results[b].iter().filter_map(cpu_per_msg).collect())
                            .map(|s| s.0)
                    };
                    match (cpu(0), cpu(b)) {
                        (Some(ours), Some(theirs)) if theirs > 0.0 => {
                            format!("broker CPU per msg {:.2}×", ours / theirs)
                        }
                        _ => String::new(),
                    }
                }))
                .filter(|s| !s.is_empty())
                .collect();
            println!();
            println!("{} ÷ {name}: {}", brokers[0].0, ratios.join(", "));
        }
    }
    i32::from(failed)
}

//! The report's "What holds the targets that are not met": for each target the run missed,
//! the figures of the same run that name what held it (CPU per order or per request against
//! what the target leaves, the served tail against the queued one), and where the analysis of
//! what would remove it is written down. Everything stated is computed from the run; only the
//! pointers to the analyses are fixed text.

use std::fmt::Write as _;

use loadgen::{RunReport, format_ms};

use super::memory::CpuShare;
use super::report::{
    GATEWAY_ADDED_P99_MS, GATEWAY_RATIO_TARGET, HOT_TARGET_PER_SEC, PAGE_P99_MS, READS_P99_MS,
    Report, SUSTAINED_TARGET_PER_SEC, stolen_percent,
};

/// The bare hyper server's component in the memory log ([`super::memory`]).
const HELLO_COMPONENT: &str = "hello-server (ceiling)";

/// Milliseconds of CPU per unit of work: `cores` busy on average at `per_sec` units a second.
pub(super) fn ms_per_unit(cores: f64, per_sec: f64) -> Option<f64> {
    (per_sec > 0.0 && cores.is_finite()).then(|| cores * 1000.0 / per_sec)
}

/// The most CPU a unit of work may take for `per_sec` units a second on `cores` fully busy
/// cores, in milliseconds.
pub(super) fn budget_ms(cores: usize, per_sec: f64) -> f64 {
    if per_sec > 0.0 {
        cores as f64 * 1000.0 / per_sec
    } else {
        f64::INFINITY
    }
}

/// A half-load run whose p99 missed its bound.
pub(super) struct Tail<'r> {
    pub(super) name: String,
    pub(super) run: &'r RunReport,
    pub(super) bound_ms: f64,
}

/// Whether the tail beyond `bound_ms` is queueing rather than slow answers: the answers were
/// within the bound once sent (served p99), the p99 counted from the due time was not.
pub(super) fn queued_not_slow(run: &RunReport, bound_ms: f64) -> bool {
    run.service_time.p99_ms <= bound_ms && run.latency.p99_ms > bound_ms
}

impl Report<'_> {
    /// Milliseconds of CPU component `name` spent per unit of work in `share`.
    fn component_ms(&self, share: &CpuShare, name: &str, per_sec: f64) -> Option<f64> {
        self.memory
            .components
            .iter()
            .position(|component| component.name == name)
            .and_then(|index| share.cores.get(index).copied())
            .and_then(|cores| ms_per_unit(cores, per_sec))
    }

    /// The largest consumers of `share`, as `name X ms` per unit at `per_sec`.
    fn largest_per_unit(&self, share: &CpuShare, per_sec: f64, count: usize) -> String {
        self.components_by_cores(share)
            .iter()
            .take(count)
            .filter_map(|(name, cores)| {
                ms_per_unit(*cores, per_sec).map(|ms| format!("{name} {ms:.1} ms"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The half-load runs that missed their p99 bound.
    pub(super) fn tails(&self) -> Vec<Tail<'_>> {
        let c = &self.catalog;
        let mut runs: Vec<(String, &RunReport, f64)> = vec![
            ("product pages, 50%".to_owned(), &c.by_id_half, PAGE_P99_MS),
            (
                format!("listings of 20 ({} products), 50%", self.args.products),
                &c.reads.listing_half,
                READS_P99_MS,
            ),
            (
                format!("search of 20 ({} products), 50%", self.args.products),
                &c.reads.search_half,
                READS_P99_MS,
            ),
            (
                "suggestions, 50%".to_owned(),
                &c.reads.suggest_half,
                PAGE_P99_MS,
            ),
        ];
        if let Some(large) = &self.large {
            runs.push((
                format!("listings of 20 ({} products), 50%", large.products),
                &large.reads.listing_half,
                READS_P99_MS,
            ));
            runs.push((
                format!("search of 20 ({} products), 50%", large.products),
                &large.reads.search_half,
                READS_P99_MS,
            ));
        }
        // The gateway's added p99 is judged against the direct run's p99 plus 1 ms.
        let gateway_bound = self.overhead.direct_half.latency.p99_ms + GATEWAY_ADDED_P99_MS;
        runs.insert(
            0,
            (
                "through the gateway (one product), 50%".to_owned(),
                &self.overhead.gateway_half,
                gateway_bound,
            ),
        );
        runs.into_iter()
            .filter(|(_, run, bound)| run.latency.p99_ms > *bound)
            .map(|(name, run, bound_ms)| Tail {
                name,
                run,
                bound_ms,
            })
            .collect()
    }

    pub(super) fn shortfall_markdown(&self, out: &mut String) {
        let cores = self.machine.cores.max(1);
        let (fixed, sustained, hot) = (&self.checkout_rate, &self.checkout_sustained, &self.hot);
        let checkout_missed = !self.sustained_met() || !self.fixed_rate_met() || !self.hot_met();
        let gateway_missed = self.gateway_ratio() < GATEWAY_RATIO_TARGET;
        let tails = self.tails();
        if !checkout_missed && !gateway_missed && tails.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n## What holds the targets that are not met\n");
        let _ = writeln!(
            out,
            "From this run's own figures (CPU per unit of work = a run's average cores busy \
             divided by its rate). The measurements behind what would remove each limit are in \
             docs/ARCHITECTURE.md and services/gateway/README.md.\n"
        );

        if checkout_missed {
            let mut text = String::from("- **Checkout: the machine's CPU per order.**");
            if let Some(share) = self.memory.cpu_of("checkout sustained")
                && let Some(machine_ms) = ms_per_unit(share.machine_cores, sustained.paid_per_sec)
            {
                let budget = budget_ms(cores, SUSTAINED_TARGET_PER_SEC);
                let _ = write!(
                    text,
                    " In the sustained run the machine was {:.0}% busy and spent {machine_ms:.1} \
                     ms of CPU per paid order over all its processes (the load generator \
                     included); {SUSTAINED_TARGET_PER_SEC:.0} orders/s on {cores} cores leaves at most \
                     {budget:.1} ms per order with every core busy, {:.1} times less. The \
                     largest shares per paid order: {}.",
                    self.busy_percent(share),
                    machine_ms / budget,
                    self.largest_per_unit(share, sustained.paid_per_sec, 6)
                );
                if let Some(rate) = fixed.target_rate {
                    let needed = rate * machine_ms / 1000.0;
                    let _ = write!(
                        text,
                        " At that cost the fixed {rate}/s asks for {needed:.2} of the {cores} \
                         cores{}; it paid {:.1}/s and shed {}.",
                        if needed >= 0.9 * cores as f64 {
                            ", more than the machine can give with the load generator's share \
                             and a margin for stalls"
                        } else {
                            ""
                        },
                        fixed.paid_per_sec,
                        fixed.shed
                    );
                }
            }
            if !self.fixed_rate_met() {
                let label = format!("checkout at {}/s", self.args.order_rate);
                let busy = self
                    .memory
                    .cpu_of(&label)
                    .map_or_else(String::new, |share| {
                        format!(
                            " the machine was {:.0}% busy during it, and",
                            self.busy_percent(share)
                        )
                    });
                let _ = write!(
                    text,
                    " The fixed rate's latency:{busy} each step's tail is its wait in a queue: \
                     p99 create call {}, reservation {}, \
                     payment call {} (which waits for the order's `order.awaiting_payment` to \
                     reach payment-service's replica), settlement {}.",
                    format_ms(fixed.create_call.p99_ms),
                    format_ms(fixed.reservation.p99_ms),
                    format_ms(fixed.payment_call.p99_ms),
                    format_ms(fixed.settlement.p99_ms)
                );
            }
            if let Some(share) = self.memory.cpu_of("hot product")
                && let Some(ms) = ms_per_unit(share.machine_cores, hot.decided_per_sec)
            {
                let _ = write!(
                    text,
                    " The hot product's {:.0} decisions a second kept the machine {:.0}% busy, \
                     {ms:.1} ms of CPU per decided order against {:.1} ms for {HOT_TARGET_PER_SEC:.0}/s \
                     (its largest: {}).",
                    hot.decided_per_sec,
                    self.busy_percent(share),
                    budget_ms(cores, HOT_TARGET_PER_SEC),
                    self.largest_per_unit(share, hot.decided_per_sec, 3)
                );
            }
            text.push_str(
                " What would remove it: less CPU per order, chiefly the local MongoDB-wire \
                 server's commits (compose and Kubernetes run MongoDB itself) and fewer hops on \
                 the order path (each a consume, a write and a produce); and a machine where the \
                 load generator, Zipkin, Mailpit and the workflow engine do not share the cores \
                 (docs/ARCHITECTURE.md, \"Checkout throughput: what costs what\" and \"The \
                 ceiling on a second host\").",
            );
            let _ = writeln!(out, "{text}");
        }

        if gateway_missed {
            let o = &self.overhead;
            let mut text = String::from("- **Gateway / direct: the second hop's CPU.**");
            if let (Some(direct), Some(via)) = (
                self.memory.cpu_of("direct"),
                self.memory.cpu_of("via gateway"),
            ) && let (Some(direct_ms), Some(via_ms)) = (
                ms_per_unit(direct.machine_cores, o.direct_sat.ok_per_sec),
                ms_per_unit(via.machine_cores, o.gateway_sat.ok_per_sec),
            ) {
                let us = |ms: f64| ms * 1000.0;
                let named = |share: &CpuShare, name: &str, per_sec: f64| {
                    self.component_ms(share, name, per_sec)
                        .map_or_else(|| "n/a".to_owned(), |ms| format!("{:.0} µs", us(ms)))
                };
                let allowed = direct_ms / GATEWAY_RATIO_TARGET;
                let _ = write!(
                    text,
                    " Both saturation runs kept the machine busy ({:.0}% directly, {:.0}% through \
                     the gateway), so throughput is CPU per request: directly {:.0} µs over the \
                     machine (product-service {}), through the gateway {:.0} µs (gateway {}, \
                     product-service {}). {:.0}% of direct allows {:.0} µs per request, so the \
                     second hop may cost {:.0} µs and cost {:.0} µs.",
                    self.busy_percent(direct),
                    self.busy_percent(via),
                    us(direct_ms),
                    named(direct, "product-service", o.direct_sat.ok_per_sec),
                    us(via_ms),
                    named(via, "gateway", o.gateway_sat.ok_per_sec),
                    named(via, "product-service", o.gateway_sat.ok_per_sec),
                    GATEWAY_RATIO_TARGET * 100.0,
                    us(allowed),
                    us(allowed - direct_ms),
                    us(via_ms - direct_ms)
                );
                // The least a hop can cost here: a relay that only serves a request and sends
                // it on, at the bare hello server's CPU per request on each of its two sides,
                // plus what product-service spends more per request when fed through a hop.
                let hello_ms = self.memory.cpu_of("hello-server").and_then(|share| {
                    self.component_ms(share, HELLO_COMPONENT, o.hello_sat.ok_per_sec)
                });
                if let (Some(hello_ms), Some(direct_product), Some(via_product)) = (
                    hello_ms,
                    self.component_ms(direct, "product-service", o.direct_sat.ok_per_sec),
                    self.component_ms(via, "product-service", o.gateway_sat.ok_per_sec),
                ) {
                    let fed_through_a_hop = (via_product - direct_product).max(0.0);
                    let bare_hop = 2.0 * hello_ms + fed_through_a_hop;
                    let _ = write!(
                        text,
                        " Even a relay that did nothing but pass requests on, at the bare hello \
                         server's {:.0} µs per request on each of its two sides, with \
                         product-service's {:.0} µs more per request when fed through a hop, \
                         would make {:.0}% of direct on this machine.",
                        us(hello_ms),
                        us(fed_through_a_hop),
                        direct_ms / (direct_ms + bare_hop) * 100.0
                    );
                }
            }
            text.push_str(
                " What would remove it: about half of the gateway's CPU is the kernel's \
                 loopback TCP path (a connection per hop, a write each way; `perf` profiles in \
                 services/gateway/README.md, Performance), and the rest is spread over hyper, \
                 tracing and allocation with no piece above a few percent; a gateway on cores \
                 of its own takes its CPU off the services' machine.",
            );
            let _ = writeln!(out, "{text}");
        }

        if !tails.is_empty() {
            let queued = tails
                .iter()
                .filter(|tail| queued_not_slow(tail.run, tail.bound_ms))
                .count();
            let mut text = format!(
                "- **Tails at half load: requests queued behind stalls.** {queued} of the {} \
                 runs below answered within their bound once a request was sent (served p99) \
                 and missed it only counted from the due time: requests waited for their \
                 connection's previous answer while a core was held. On two cores shared by \
                 the load generator, the gateway, product-service and every other process of \
                 the stack, any thread that holds a core for a few milliseconds (a JVM's \
                 compiler or collector, the kernel's memory monitor, Kafka) delays every \
                 request due meanwhile (`perf sched`, docs/ARCHITECTURE.md, \"What the payment \
                 call waits for\"). What would remove it: cores for the request path apart \
                 from the infrastructure's JVMs.",
                tails.len()
            );
            if queued < tails.len() {
                let _ = write!(
                    text,
                    " In the other {}, the answers themselves took longer than the bound \
                     (served p99 above it).",
                    tails.len() - queued
                );
            }
            let _ = writeln!(out, "{text}\n");
            let _ = writeln!(
                out,
                "| run | p99 | bound | served p99 | machine busy | stolen |\n|---|---|---|---|---|---|"
            );
            for tail in &tails {
                let (busy, stolen) = self.memory.cpu_of(&tail.run.label).map_or_else(
                    || ("n/a".to_owned(), "n/a".to_owned()),
                    |share| {
                        (
                            format!("{:.0}%", self.busy_percent(share)),
                            stolen_percent(share),
                        )
                    },
                );
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {busy} | {stolen} |",
                    tail.name,
                    format_ms(tail.run.latency.p99_ms),
                    format_ms(tail.bound_ms),
                    format_ms(tail.run.service_time.p99_ms)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use loadgen::LatencySummary;

    use super::*;

    fn half_run(p99_ms: f64, served_p99_ms: f64) -> RunReport {
        let summary = |p99_ms| LatencySummary {
            count: 100,
            p99_ms,
            ..LatencySummary::default()
        };
        RunReport {
            label: "search 50%".into(),
            mode: "fixed-rate".into(),
            connections: 16,
            duration_secs: 10.0,
            target_rate: Some(100.0),
            ok: 1000,
            non_2xx: 0,
            errors: 0,
            missed: 0,
            ok_per_sec: 100.0,
            latency: summary(p99_ms),
            service_time: summary(served_p99_ms),
            statuses: BTreeMap::new(),
            first_error: None,
        }
    }

    #[test]
    fn cpu_per_unit_and_the_budget_a_rate_leaves() {
        assert_eq!(ms_per_unit(1.9, 50.0), Some(38.0));
        assert_eq!(ms_per_unit(1.0, 0.0), None);
        assert!((budget_ms(2, 150.0) - 13.333).abs() < 0.001);
        assert_eq!(budget_ms(2, 500.0), 4.0);
        assert!(budget_ms(2, 0.0).is_infinite());
    }

    #[test]
    fn a_tail_is_queueing_only_when_the_answers_were_within_the_bound() {
        assert!(queued_not_slow(&half_run(20.0, 4.0), 15.0));
        assert!(!queued_not_slow(&half_run(20.0, 16.0), 15.0));
        assert!(!queued_not_slow(&half_run(10.0, 4.0), 15.0));
    }
}

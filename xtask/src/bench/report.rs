//! `docs/BENCHMARKS.md`: the figures of one bench run set against the issues' targets, with
//! a verdict per target and the command that produced them.

use std::fmt::Write as _;

use anyhow::Result;
use loadgen::{CheckoutReport, HotReport, LatencySummary, RunReport, format_ms};

use super::*;

/// The issues' targets that the verdicts below and the shortfall section
/// ([`super::shortfall`]) both judge by.
pub(super) const SUSTAINED_TARGET_PER_SEC: f64 = 150.0;
pub(super) const HOT_TARGET_PER_SEC: f64 = 500.0;
pub(super) const GATEWAY_RATIO_TARGET: f64 = 0.7;
pub(super) const GATEWAY_ADDED_P99_MS: f64 = 1.0;
/// Half-load p99 bounds: product pages and suggestions, listings and search.
pub(super) const PAGE_P99_MS: f64 = 5.0;
pub(super) const READS_P99_MS: f64 = 15.0;

pub(super) struct Overhead {
    pub(super) hello_sat: RunReport,
    pub(super) direct_sat: RunReport,
    pub(super) gateway_sat: RunReport,
    pub(super) direct_half: RunReport,
    pub(super) gateway_half: RunReport,
}

pub(super) struct Catalog {
    pub(super) by_id_sat: RunReport,
    pub(super) by_id_half: RunReport,
    pub(super) reads: CatalogReads,
}

/// Listings, search and suggestions through the gateway, each at saturation and at half of it.
pub(super) struct CatalogReads {
    pub(super) listing_sat: RunReport,
    pub(super) listing_half: RunReport,
    pub(super) search_sat: RunReport,
    pub(super) search_half: RunReport,
    /// The same searches sent with `Cache-Control: no-cache`: matches computed afresh.
    pub(super) search_fresh_sat: RunReport,
    pub(super) search_fresh_half: RunReport,
    pub(super) suggest_sat: RunReport,
    pub(super) suggest_half: RunReport,
}

impl CatalogReads {
    /// The runs with their labels, in the order the report's tables list them.
    pub(super) fn labelled(&self) -> [(&'static str, &RunReport); 8] {
        [
            ("listing, saturation", &self.listing_sat),
            ("listing, 50%", &self.listing_half),
            ("search, saturation", &self.search_sat),
            ("search, 50%", &self.search_half),
            ("search, matches afresh, saturation", &self.search_fresh_sat),
            ("search, matches afresh, 50%", &self.search_fresh_half),
            ("suggest, saturation", &self.suggest_sat),
            ("suggest, 50%", &self.suggest_half),
        ]
    }
}

/// The storefront's budgets, from `web/bench/storefront.mjs` (Chromium through the gateway).
#[derive(Debug, serde::Deserialize)]
pub(super) struct StorefrontFigures {
    pub(super) first_page_js_bytes: f64,
    pub(super) home_ms: f64,
    pub(super) search_ms: f64,
    pub(super) live_update_p50_ms: f64,
    pub(super) live_update_max_ms: f64,
    pub(super) live_updates: usize,
}

/// The catalog at `--large-products`: how long a new replica takes to load it, what it holds,
/// and the read runs again.
pub(super) struct LargeCatalog {
    pub(super) products: usize,
    /// Products the seed created in this run, and how long that took.
    pub(super) seeded: seed::Seeded,
    pub(super) seed_seconds: f64,
    /// From stopping product-service to its `/health/ready` answering 200 (a new process
    /// reading the whole `product.events` topic into its read model).
    pub(super) ready_seconds: f64,
    pub(super) rss_loaded_kib: Option<u64>,
    pub(super) rss_after_kib: Option<u64>,
    pub(super) reads: CatalogReads,
}

/// What `mongo-bench` prints (tests/mongo-conformance/src/bin/mongo-bench.rs).
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct MongoFigures {
    pub(super) products: u32,
    pub(super) find_by_id_ms: Quantiles,
    pub(super) listing_ms: Quantiles,
    pub(super) guarded_updates_per_s: UpdateRates,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Quantiles {
    pub(super) p50: f64,
    pub(super) p99: f64,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct UpdateRates {
    pub(super) serial: f64,
    pub(super) clients_8: f64,
}

pub(super) struct Report<'a> {
    pub(super) machine: Machine,
    /// The share of the run's CPU time the hypervisor took ([`Machine::stolen_since_start`]).
    pub(super) stolen: Option<f64>,
    pub(super) command_line: String,
    pub(super) plan: &'a Plan,
    pub(super) args: &'a BenchArgs,
    pub(super) overhead: Overhead,
    pub(super) catalog: Catalog,
    /// The storefront's budgets, or why they could not be measured.
    pub(super) storefront: Result<StorefrontFigures, String>,
    pub(super) large: Option<LargeCatalog>,
    pub(super) checkout_rate: CheckoutReport,
    pub(super) checkout_sustained: CheckoutReport,
    pub(super) hot: HotReport,
    pub(super) costs: OrderCosts,
    pub(super) limits: capacity::Limits,
    pub(super) mongo: MongoFigures,
    pub(super) memory: &'a MemoryLog,
}

pub(super) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.0}%", a / b * 100.0)
    } else {
        "n/a".into()
    }
}

pub(super) fn mib(m: Option<Memory>) -> String {
    match m {
        Some(m) if m.processes > 1 => {
            format!("{:.1} MB ({} proc.)", m.kib as f64 / 1024.0, m.processes)
        }
        Some(m) => format!("{:.1} MB", m.kib as f64 / 1024.0),
        None => "-".into(),
    }
}

pub(super) fn errors_cell(r: &RunReport) -> String {
    let mut parts = Vec::new();
    if r.non_2xx > 0 {
        let statuses: Vec<String> = r.statuses.iter().map(|(s, n)| format!("{n}x{s}")).collect();
        parts.push(format!("non-2xx {}", statuses.join(", ")));
    }
    if r.errors > 0 {
        parts.push(format!("errors {}", r.errors));
    }
    if r.missed > 0 {
        parts.push(format!("missed {}", r.missed));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("; ")
    }
}

pub(super) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

impl Report<'_> {
    pub(super) fn run_row(out: &mut String, name: &str, r: &RunReport) {
        let l = &r.latency;
        let rate = r
            .target_rate
            .map_or_else(|| "max".to_owned(), |t| format!("{}/s", per_sec(t)));
        let _ = writeln!(
            out,
            "| {name} | {rate} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.connections,
            per_sec(r.ok_per_sec),
            format_ms(l.p50_ms),
            format_ms(l.p90_ms),
            format_ms(l.p99_ms),
            format_ms(l.p999_ms),
            format_ms(l.max_ms),
            format_ms(r.service_time.p99_ms),
            errors_cell(r),
        );
    }

    pub(super) fn run_table(out: &mut String, rows: &[(&str, &RunReport)]) {
        let _ = writeln!(
            out,
            "| run | pace | conns | req/s (2xx) | p50 | p90 | p99 | p99.9 | max | served p99 | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, r) in rows {
            Self::run_row(out, name, r);
        }
    }

    pub(super) fn gateway_ratio(&self) -> f64 {
        let o = &self.overhead;
        if o.direct_sat.ok_per_sec > 0.0 {
            o.gateway_sat.ok_per_sec / o.direct_sat.ok_per_sec
        } else {
            0.0
        }
    }

    pub(super) fn sustained_met(&self) -> bool {
        let s = &self.checkout_sustained;
        s.paid_per_sec >= SUSTAINED_TARGET_PER_SEC && s.failed == 0
    }

    pub(super) fn fixed_rate_met(&self) -> bool {
        let r = &self.checkout_rate;
        r.create_call.p99_ms + r.reservation.p99_ms <= 150.0
            && r.payment_call.p99_ms <= 100.0
            && r.total.p99_ms <= 400.0
            && r.failed == 0
            && r.shed == 0
    }

    pub(super) fn hot_met(&self) -> bool {
        self.hot.exact && self.hot.decided_per_sec >= HOT_TARGET_PER_SEC
    }

    pub(super) fn added_p99_ms(&self) -> f64 {
        self.overhead.gateway_half.latency.p99_ms - self.overhead.direct_half.latency.p99_ms
    }

    /// How busy the whole machine was in `share`, in percent of all its cores.
    pub(super) fn busy_percent(&self, share: &CpuShare) -> f64 {
        share.machine_cores / self.machine.cores.max(1) as f64 * 100.0
    }

    /// The components with the cores each used in `share`, the busiest first.
    pub(super) fn components_by_cores(&self, share: &CpuShare) -> Vec<(&str, f64)> {
        let mut busiest: Vec<(&str, f64)> = self
            .memory
            .components
            .iter()
            .zip(&share.cores)
            .map(|(component, cores)| (component.name.as_str(), *cores))
            .collect();
        busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
        busiest
    }

    /// The largest figure among our services' peaks under load.
    pub(super) fn largest_service(&self) -> Option<(String, Memory)> {
        let mut largest: Option<(String, Memory)> = None;
        for (index, c) in self.memory.components.iter().enumerate() {
            if !c.ours {
                continue;
            }
            for phase in [Phase::Reads, Phase::Checkout] {
                if let Some(m) = self.memory.get(index, phase)
                    && largest.as_ref().is_none_or(|(_, l)| m.kib > l.kib)
                {
                    largest = Some((c.name.clone(), m));
                }
            }
        }
        largest
    }

    pub(super) fn summary(&self) -> Vec<String> {
        let o = &self.overhead;
        let mut lines = vec![
            format!(
                "gateway overhead: direct {:.0} req/s, via gateway {:.0} req/s ({} of direct), hello-server {:.0} req/s",
                o.direct_sat.ok_per_sec,
                o.gateway_sat.ok_per_sec,
                ratio(o.gateway_sat.ok_per_sec, o.direct_sat.ok_per_sec),
                o.hello_sat.ok_per_sec
            ),
            format!(
                "p99 added by the gateway at {:.0} req/s: {}",
                o.gateway_half.target_rate.unwrap_or_default(),
                format_ms(self.added_p99_ms().max(0.0))
            ),
            format!(
                "checkout: {:.1} orders/s sustained; create->PAID p50 {} p99 {} at {}/s",
                self.checkout_sustained.paid_per_sec,
                format_ms(self.checkout_rate.total.p50_ms),
                format_ms(self.checkout_rate.total.p99_ms),
                self.checkout_rate.target_rate.unwrap_or_default()
            ),
        ];
        if let Some((name, m)) = self.largest_service() {
            lines.push(format!(
                "largest service under load: {name} {}",
                mib(Some(m))
            ));
        }
        lines
    }

    pub(super) fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let o = &self.overhead;
        let c = &self.catalog;
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Generated by `cargo xtask bench` (`xtask/src/bench/`, load from `crates/loadgen`); \
             do not edit by hand, run it again. Throughput is measured here only, never asserted \
             in tests.\n"
        );
        let _ = writeln!(out, "## Machine and command\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| date | {} |", m.date);
        let _ = writeln!(out, "| command | `{}` |", self.command_line);
        let _ = writeln!(out, "| commit | {} |", m.commit);
        let _ = writeln!(out, "| CPU | {} |", m.cpu);
        let _ = writeln!(out, "| cores (`nproc`) | {} |", m.cores);
        let _ = writeln!(out, "| memory | {} |", m.memory);
        let _ = writeln!(out, "| kernel | {} |", m.kernel);
        let _ = writeln!(out, "| rustc | {} |", m.rustc);
        let _ = writeln!(out, "| load average at start | {} |", m.load);
        let _ = writeln!(
            out,
            "| orders the stack held at start | {} |",
            orders_at_start_text(m.orders_at_start)
        );
        let _ = writeln!(
            out,
            "| CPU time stolen by the hypervisor during the run | {} |",
            self.stolen.map_or_else(
                || "unknown".to_owned(),
                |share| format!("{:.1}%", share * 100.0)
            )
        );
        let _ = writeln!(
            out,
            "| runs | {} s measured after {} s warm-up per HTTP run, {} connections; checkout {} s per run, after {} s of unmeasured checkout |",
            self.plan.seconds,
            self.plan.warmup,
            self.args.connections,
            self.plan.checkout_seconds,
            self.plan.checkout_warmup
        );
        let _ = writeln!(
            out,
            "\nEverything runs on this one machine: the load generator ({} worker thread{}), the \
             services (release builds, as `cargo xtask up` starts them), PostgreSQL, Kafka, \
             the MongoDB-wire server (mongo-java-server), Zipkin and Mailpit. The load generator takes CPU from what it measures, \
             so the figures are a floor for a machine where it runs elsewhere.\n",
            self.args.loadgen_threads,
            if self.args.loadgen_threads == 1 {
                ""
            } else {
                "s"
            }
        );
        let _ = writeln!(
            out,
            "Tracing: every request gets its spans, and the services export a share of {} of \
             the traces to Zipkin (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, \
             `--trace-ratio`), as a production deployment samples. With every trace exported \
             (`--trace-ratio 1`, the development default), Zipkin's ingestion on the same two \
             cores took more CPU than the services it traced (52-67% of a core at about 2,000 \
             req/s through the gateway) and cut direct reads from about 10,500 to 3,800 req/s.\n",
            self.args.trace_ratio
        );

        // Targets
        let added = self.added_p99_ms();
        let largest = self.largest_service();
        let _ = writeln!(out, "## Targets\n");
        let _ = writeln!(out, "| target | measured | |\n|---|---|---|");
        let _ = writeln!(
            out,
            "| through-gateway throughput >= 70% of direct | {} ({:.0} vs {:.0} req/s) | {} |",
            ratio(o.gateway_sat.ok_per_sec, o.direct_sat.ok_per_sec),
            o.gateway_sat.ok_per_sec,
            o.direct_sat.ok_per_sec,
            verdict(self.gateway_ratio() >= GATEWAY_RATIO_TARGET)
        );
        let _ = writeln!(
            out,
            "| p99 added by the gateway < 1 ms at 50% load | {} (p99 {} via gateway vs {} direct at {:.0} req/s) | {} |",
            format_ms(added.max(0.0)),
            format_ms(o.gateway_half.latency.p99_ms),
            format_ms(o.direct_half.latency.p99_ms),
            o.gateway_half.target_rate.unwrap_or_default(),
            verdict(added < GATEWAY_ADDED_P99_MS)
        );
        let _ = writeln!(
            out,
            "| product pages over the catalog >= 60% of the single cached product, p99 <= 5 ms at 50% | {} ({:.0} vs {:.0} req/s), p99 {} | {} |",
            ratio(c.by_id_sat.ok_per_sec, o.gateway_sat.ok_per_sec),
            c.by_id_sat.ok_per_sec,
            o.gateway_sat.ok_per_sec,
            format_ms(c.by_id_half.latency.p99_ms),
            verdict(
                c.by_id_sat.ok_per_sec >= 0.6 * o.gateway_sat.ok_per_sec
                    && c.by_id_half.latency.p99_ms <= PAGE_P99_MS
            )
        );
        let mut reads = vec![(self.args.products, "listings of 20", &c.reads, false)];
        reads.push((self.args.products, "search of 20", &c.reads, true));
        if let Some(l) = &self.large {
            reads.push((l.products, "listings of 20", &l.reads, false));
            reads.push((l.products, "search of 20", &l.reads, true));
        }
        for (products, what, runs, search) in reads {
            let (sat, half) = if search {
                (&runs.search_sat, &runs.search_half)
            } else {
                (&runs.listing_sat, &runs.listing_half)
            };
            // Searches are judged as shoppers send them (a text asked again reuses its kept
            // matches); the same searches with every match computed afresh are shown beside.
            let afresh = if search {
                format!(
                    "; matches computed afresh for every request: {:.0} req/s, p99 {}",
                    runs.search_fresh_sat.ok_per_sec,
                    format_ms(runs.search_fresh_half.latency.p99_ms)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {what} ({products} products) >= 3,000 req/s, p99 <= 15 ms at 50% | {:.0} req/s, p99 {}{afresh} | {} |",
                sat.ok_per_sec,
                format_ms(half.latency.p99_ms),
                verdict(sat.ok_per_sec >= 3000.0 && half.latency.p99_ms <= READS_P99_MS)
            );
        }
        let _ = writeln!(
            out,
            "| suggestions p99 <= 5 ms (at 50%) | p99 {} at {:.0} req/s | {} |",
            format_ms(c.reads.suggest_half.latency.p99_ms),
            c.reads.suggest_half.ok_per_sec,
            verdict(c.reads.suggest_half.latency.p99_ms <= PAGE_P99_MS)
        );
        let (r, sus, hot) = (&self.checkout_rate, &self.checkout_sustained, &self.hot);
        let _ = writeln!(
            out,
            "| sustained checkout >= 150 orders/s PAID, 0 failed | {:.1} orders/s, {} failed, {} shed | {} |",
            sus.paid_per_sec,
            sus.failed,
            sus.shed,
            verdict(self.sustained_met())
        );
        let _ = writeln!(
            out,
            "| fixed {}/s: create -> AWAITING_PAYMENT p99 <= 150 ms, payment call p99 <= 100 ms, create -> PAID p99 <= 400 ms | {} / {} / {} ({} of {} paid, {} shed) | {} |",
            r.target_rate.unwrap_or_default(),
            format_ms(r.create_call.p99_ms + r.reservation.p99_ms),
            format_ms(r.payment_call.p99_ms),
            format_ms(r.total.p99_ms),
            r.paid,
            r.started,
            r.shed,
            verdict(self.fixed_rate_met())
        );
        let _ = writeln!(
            out,
            "| hot product: {} orders for {} units, exactly {} reserved, >= 500 orders/s | {} reserved ({}), {:.0} orders/s decided | {} |",
            hot.orders,
            hot.stock,
            hot.stock,
            hot.reserved,
            if hot.exact { "exact" } else { "NOT exact" },
            hot.decided_per_sec,
            verdict(self.hot_met())
        );
        let audits_hold = [r, sus]
            .iter()
            .all(|c| c.audit.as_ref().is_some_and(|a| a.passed));
        let _ = writeln!(
            out,
            "| invariants after the checkout runs (stock, charges, receipts) | {} | {} |",
            if audits_hold {
                "hold"
            } else {
                "violated (section 3)"
            },
            if audits_hold { "met" } else { "**not met**" }
        );
        match &largest {
            Some((name, mem)) => {
                let _ = writeln!(
                    out,
                    "| every service < 50 MB RSS under load | largest: {name}, {} | {} |",
                    mib(Some(*mem)),
                    verdict(mem.kib < 50 * 1024)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| every service < 50 MB RSS under load | no service process found | - |"
                );
            }
        }

        self.shortfall_markdown(&mut out);

        // 1) overhead
        let _ = writeln!(out, "\n## 1. Gateway overhead\n");
        let _ = writeln!(
            out,
            "The same `GET /api/products/{{id}}` (one product; product-service answers it from its cache) \
             directly on product-service and through the gateway, and `GET /` on a bare hyper \
             server (`hello-server`, no routing, middleware or logging) as the ceiling of this \
             machine. Saturation: closed loop, each connection sends as soon as its answer \
             arrived. 50%: open loop at half the through-gateway saturation rate, both \
             directly and through the gateway; latency is counted from the due time when a \
             request had to wait for its connection's previous answer (no coordinated \
             omission). \"served p99\" counts from the send only, in every run: where it is \
             far below p99, the tail is requests queued behind a stall, not slow answers.\n"
        );
        Self::run_table(
            &mut out,
            &[
                ("hello-server (ceiling)", &o.hello_sat),
                ("product-service direct", &o.direct_sat),
                ("through the gateway", &o.gateway_sat),
                ("product-service direct, 50%", &o.direct_half),
                ("through the gateway, 50%", &o.gateway_half),
            ],
        );
        let _ = writeln!(out, "\n| ratio | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| gateway / direct throughput | {} |",
            ratio(o.gateway_sat.ok_per_sec, o.direct_sat.ok_per_sec)
        );
        let _ = writeln!(
            out,
            "| direct / hello-server throughput | {} |",
            ratio(o.direct_sat.ok_per_sec, o.hello_sat.ok_per_sec)
        );
        let _ = writeln!(
            out,
            "| gateway / hello-server throughput | {} |",
            ratio(o.gateway_sat.ok_per_sec, o.hello_sat.ok_per_sec)
        );
        let _ = writeln!(
            out,
            "| added by the gateway at saturation, p50 / p99 | {} / {} |",
            signed_ms(o.gateway_sat.latency.p50_ms - o.direct_sat.latency.p50_ms),
            signed_ms(o.gateway_sat.latency.p99_ms - o.direct_sat.latency.p99_ms)
        );
        let _ = writeln!(
            out,
            "| added by the gateway at 50%, p50 / p99 | {} / {} |",
            signed_ms(o.gateway_half.latency.p50_ms - o.direct_half.latency.p50_ms),
            signed_ms(added)
        );

        // 2) catalog
        let _ = writeln!(out, "\n## 2. Catalog reads through the gateway\n");
        let _ = writeln!(
            out,
            "`GET /api/products/{{id}}` rotating over {} seeded products; category listings of \
             20 (`GET /api/products?category=...&limit=20`, some with `in_stock` and a sort) \
             rotating over the six categories; ranked search of 20 in both languages \
             (`q=蓝牙耳机`, `q=headphones&brand=sony`, a misspelling, mixed language, `lang=zh-CN`, \
             ...: `.local/bench/search-paths.txt`), each answer with its facets; suggestions \
             (`GET /api/products/suggest?q=son`, `q=小米 电热`, ...). All served from \
             product-service's in-memory read model. A replica keeps the matches of each search \
             text for the current index (they change only when the index does; filters, facets \
             and sorting are still worked out for every request from the live rows), so a text \
             asked again skips the index; \"search, matches afresh\" sends the same searches \
             with `Cache-Control: no-cache`, which makes product-service compute every \
             request's matches again: the cost of a text it has not seen. 50% = open loop at \
             half the saturation rate.\n",
            self.args.products
        );
        Self::run_table(
            &mut out,
            &[
                [
                    ("product by id, saturation", &c.by_id_sat),
                    ("product by id, 50%", &c.by_id_half),
                ]
                .as_slice(),
                c.reads.labelled().as_slice(),
            ]
            .concat(),
        );

        if let Some(large) = &self.large {
            Self::large_catalog_markdown(&mut out, large);
        }
        self.storefront_markdown(&mut out);

        // 3) checkout
        self.checkout_markdown(&mut out);
        self.hot_and_costs_markdown(&mut out);

        // 4) memory
        let _ = writeln!(out, "\n## 4. Memory\n");
        let _ = writeln!(
            out,
            "Sampled every 250 ms from `/proc`: VmRSS for a single process; for a process \
             tree (PostgreSQL and its backends) the sum of PSS, which splits shared pages \
             among their sharers instead of counting them once per process, every 2 s (reading \
             PSS walks each process's page tables: every 250 ms it took 13% of a core from the \
             runs it measured). Idle is before any load; the peaks are the highest samples \
             during the HTTP runs (1 and 2) and during the checkout runs (3).\n"
        );
        let _ = writeln!(
            out,
            "| process | idle | peak, HTTP reads | peak, checkout |\n|---|---|---|---|"
        );
        for (index, comp) in self.memory.components.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {} |",
                comp.name,
                if comp.ours { "" } else { " *" },
                mib(self.memory.get(index, Phase::Idle)),
                mib(self.memory.get(index, Phase::Reads)),
                mib(self.memory.get(index, Phase::Checkout)),
            );
        }
        let _ = writeln!(
            out,
            "\n\\* infrastructure or reference, not held to the 50 MB target."
        );

        // 5) the MongoDB-wire server
        let m = &self.mongo;
        let _ = writeln!(out, "\n## 5. The MongoDB-wire server\n");
        let _ = writeln!(
            out,
            "`mongo-bench` (`tests/mongo-conformance`) on a database of its own on the local \
             server (mongo-java-server, see docs/ARCHITECTURE.md), with {} products shaped like \
             product-service's: a find by `_id` and a category listing of 20 sorted by \
             `price.amount` with the `_id` tie-break, each serially; guarded updates (read the \
             version, then `findOneAndUpdate` guarded by it and by the stock, as a reservation \
             writes) for 5 s serially and from 8 clients. Its memory is the `mongo-wire` row \
             above.\n",
            m.products
        );
        let _ = writeln!(
            out,
            "| operation | p50 | p99 |\n|---|---|---|\n| find by `_id` | {:.2} ms | {:.2} ms |\n| sorted listing of 20 | {:.2} ms | {:.2} ms |",
            m.find_by_id_ms.p50, m.find_by_id_ms.p99, m.listing_ms.p50, m.listing_ms.p99
        );
        let _ = writeln!(
            out,
            "\n| guarded updates | per second |\n|---|---|\n| serially | {:.0} |\n| 8 clients | {:.0} |",
            m.guarded_updates_per_s.serial, m.guarded_updates_per_s.clients_8
        );
        self.cpu_markdown(&mut out);
        self.read_runs_cpu_markdown(&mut out);
        out
    }

    pub(super) fn storefront_markdown(&self, out: &mut String) {
        let _ = writeln!(out, "\n### The storefront in a browser\n");
        let _ = writeln!(
            out,
            "`web/bench/storefront.mjs`: Debian's Chromium (playwright-core) through the gateway. \
             Cold loads in a fresh profile (empty cache) after one warm-up load; rendered = \
             `performance.now()` when the first product of the grid shows (the API call \
             included). Live update = from the moment order-service changed the order to PAID \
             (the change's own timestamp) to the open order page receiving it over the stream, \
             after checking out and paying through the page.\n"
        );
        match &self.storefront {
            Ok(f) => {
                let _ = writeln!(out, "| budget | measured | |\n|---|---|---|");
                let _ = writeln!(
                    out,
                    "| JavaScript on the first page <= 150 KB gzipped | {:.1} KB | {} |",
                    f.first_page_js_bytes / 1024.0,
                    verdict(f.first_page_js_bytes <= 150.0 * 1024.0)
                );
                let _ = writeln!(
                    out,
                    "| home page rendered <= 1 s from a cold load | {} | {} |",
                    format_ms(f.home_ms),
                    verdict(f.home_ms <= 1000.0)
                );
                let _ = writeln!(
                    out,
                    "| search results (`q=蓝牙耳机`) rendered <= 1 s from a cold load | {} | {} |",
                    format_ms(f.search_ms),
                    verdict(f.search_ms <= 1000.0)
                );
                let _ = writeln!(
                    out,
                    "| live status update <= 300 ms after the change | p50 {}, max {} over {} orders | {} |",
                    format_ms(f.live_update_p50_ms),
                    format_ms(f.live_update_max_ms),
                    f.live_updates,
                    verdict(f.live_update_max_ms <= 300.0)
                );
            }
            Err(error) => {
                let _ = writeln!(out, "Not measured: {error}");
            }
        }
    }

    pub(super) fn large_catalog_markdown(out: &mut String, l: &LargeCatalog) {
        let _ = writeln!(out, "\n### The same reads over {} products\n", l.products);
        let kib = |k: Option<u64>| {
            k.map_or("n/a".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        let _ = writeln!(
            out,
            "The catalog seeded up to {} products (`cargo xtask seed --count {}`: {} created in \
             this run in {:.0} s, {} there already), then product-service restarted: a new \
             replica reads the whole `product.events` topic into its read model before it \
             reports ready. Same paths as above.\n",
            l.products, l.products, l.seeded.created, l.seed_seconds, l.seeded.existing
        );
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(
            out,
            "| time to a ready replica (stop, start, load {} products, ready) | {:.1} s |",
            l.products, l.ready_seconds
        );
        let _ = writeln!(
            out,
            "| product-service RSS once ready | {} |",
            kib(l.rss_loaded_kib)
        );
        let _ = writeln!(
            out,
            "| product-service RSS after the runs below | {} |\n",
            kib(l.rss_after_kib)
        );
        Self::run_table(out, &l.reads.labelled());
    }

    pub(super) fn hot_and_costs_markdown(&self, out: &mut String) {
        let (r, s) = (&self.checkout_rate, &self.checkout_sustained);
        let _ = writeln!(
            out,
            "\nProducts are picked by popularity: {} over {} products (the most popular takes {:.0}% of the orders), as sales in a real shop are skewed.\n",
            s.popularity,
            s.products,
            s.top_product_share * 100.0
        );
        let _ = writeln!(
            out,
            "Invariants after each run, over every order it created (`crates/loadgen/src/audit.rs`): no order left `PENDING`; per product, available + reserved + sold unchanged and sold grown by exactly the units of `PAID` orders; per order, charges kept at the provider = 1 if `PAID`, else 0; one receipt e-mail per `PAID` order.\n"
        );
        let _ = writeln!(
            out,
            "| run | result | orders (final statuses) | settled after the run | sold = paid units | charges kept (refunded) | receipts |\n|---|---|---|---|---|---|---|"
        );
        for (name, c) in [("fixed rate", r), ("sustained", s)] {
            match &c.audit {
                Some(a) => {
                    let statuses: Vec<String> =
                        a.statuses.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    let _ = writeln!(
                        out,
                        "| {name} | {} | {} ({}) | {:.1} s | {} = {} | {} ({}) | {} of {} |",
                        if a.passed { "hold" } else { "**violated**" },
                        a.orders,
                        statuses.join(", "),
                        a.settle_secs,
                        a.sold_units,
                        a.paid_units,
                        a.charges_kept,
                        a.refunds,
                        a.receipts_found,
                        a.receipts_expected
                    );
                    for violation in &a.violations {
                        let _ = writeln!(out, "\n- {name}: {}", violation.replace('|', "/"));
                    }
                }
                None => {
                    let _ = writeln!(out, "| {name} | not checked | | | | | |");
                }
            }
        }

        let h = &self.hot;
        let _ = writeln!(out, "\n### One hot product\n");
        let _ = writeln!(
            out,
            "{} orders of one unit each for one new product with {} units, {} in flight at once, through the gateway; an order is decided when it leaves `PENDING` (`AWAITING_PAYMENT`: its unit was reserved; `REJECTED`: sold out). The rate counts decided orders from the first to the last decision.\n",
            h.orders, h.stock, h.concurrency
        );
        let _ = writeln!(
            out,
            "| reserved | rejected | failed | busy refusals (retried) | decided/s | decision p50 | p99 | create call p50 | p99 | product after (available / reserved / sold) | exact |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} / {} / {} | {} |",
            h.reserved,
            h.rejected,
            h.failed,
            h.busy_refusals,
            h.decided_per_sec,
            format_ms(h.decision.p50_ms),
            format_ms(h.decision.p99_ms),
            format_ms(h.create_call.p50_ms),
            format_ms(h.create_call.p99_ms),
            h.after.available,
            h.after.reserved,
            h.after.sold,
            if h.exact { "yes" } else { "**no**" }
        );
        if let Some(failure) = &h.first_failure {
            let _ = writeln!(out, "\nFirst failure: `{}`", failure.replace('|', "/"));
        }

        let c = &self.costs;
        let l = &self.limits;
        let _ = writeln!(out, "\n### What one order costs, and the machine's limit\n");
        let _ = writeln!(
            out,
            "Counted over the sustained run's order flows ({} orders paid; the counters read when the first order started and when the last one finished, {:.0} s apart, so setup and the audit are left out; everything the platform did in between, divided by the orders paid in that time at the run's rate): records on the five platform topics (end offsets), PostgreSQL commits over all databases (`pg_stat_database`), write commands and store commits on the MongoDB-wire server (`serverStatus`). The limits are the same machine's infrastructure alone, measured in this run: pgbench with a one-`INSERT` transaction (8 clients, 10 s), and Kafka's `ProducerPerformance` with our producer's settings (acks=all, idempotent, lz4, linger 5 ms; 200,000 records of 1 KB).\n",
            c.orders, c.window_secs
        );
        let per_order = |cost: f64| {
            if cost.is_finite() {
                format!("{cost:.1}")
            } else {
                "n/a".to_owned()
            }
        };
        let ceiling = |rate: f64, cost: f64| {
            if cost.is_finite() && cost > 0.0 {
                format!("{:.0} orders/s", rate / cost)
            } else {
                "n/a".to_owned()
            }
        };
        let _ = writeln!(
            out,
            "| resource | per paid order | machine limit | orders/s if it were the only cost |\n|---|---|---|---|"
        );
        let _ = writeln!(
            out,
            "| PostgreSQL commits | {} | {:.0} commits/s | {} |",
            per_order(c.pg_commits),
            l.pg_commits_per_sec,
            ceiling(l.pg_commits_per_sec, c.pg_commits)
        );
        let _ = writeln!(
            out,
            "| Kafka records | {} | {:.0} records/s | {} |",
            per_order(c.kafka_records),
            l.kafka_records_per_sec,
            ceiling(l.kafka_records_per_sec, c.kafka_records)
        );
        let _ = writeln!(
            out,
            "| MongoDB-wire write commands (store commits) | {} ({}) | {:.0} guarded updates/s from 8 clients (section 5) | {} |",
            per_order(c.mongo_writes),
            per_order(c.mongo_commits),
            self.mongo.guarded_updates_per_s.clients_8,
            ceiling(self.mongo.guarded_updates_per_s.clients_8, c.mongo_writes)
        );
        // `key` count, ... for counts per paid order.
        let listed = |counts: &[(String, f64)]| -> String {
            let parts: Vec<String> = counts
                .iter()
                .map(|(key, count)| format!("`{key}` {count:.2}"))
                .collect();
            parts.join(", ")
        };
        if !c.mongo_writes_by_namespace.is_empty() {
            let _ = writeln!(
                out,
                "\nMongoDB-wire write commands per paid order by collection: {}.",
                listed(&c.mongo_writes_by_namespace)
            );
        }
        if !c.mongo_commands.is_empty() {
            // Reads cost this server a round of decoding, matching and encoding as writes do.
            let total: f64 = c.mongo_commands.iter().map(|(_, count)| count).sum();
            let largest = &c.mongo_commands[..c.mongo_commands.len().min(8)];
            let _ = writeln!(
                out,
                "\nMongoDB-wire commands per paid order, reads included: {total:.1}; the largest: {}.",
                listed(largest)
            );
        }
        let _ = writeln!(
            out,
            "\nLimit line: PostgreSQL {:.0} commits/s and Kafka {:.0} records/s on this machine; the sustained run used {:.1} orders/s.",
            l.pg_commits_per_sec, l.kafka_records_per_sec, s.paid_per_sec
        );
    }

    /// The machine's CPU during each HTTP run and its three largest consumers: a run's tail
    /// latency is only as good as what else the two cores were doing meanwhile.
    pub(super) fn read_runs_cpu_markdown(&self, out: &mut String) {
        let checkout = [
            "hot product",
            "checkout sustained",
            super::run::CHECKOUT_WARMUP,
        ];
        let runs: Vec<&(String, CpuShare)> = self
            .memory
            .cpu
            .iter()
            .filter(|(label, _)| {
                !checkout.contains(&label.as_str())
                    && !label.starts_with("checkout at ")
                    && label != "storefront"
            })
            .collect();
        if runs.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nDuring the HTTP runs (sections 1 and 2): the machine's busy share, the share of its CPU time the hypervisor gave to other guests (stolen; counted as busy, so a run whose processes all spent more per request than the runs beside it had less of the machine), and the three largest consumers, as shares of one core. Before each HTTP run the bench waits (at most {} s) until the machine has been below {:.0}% busy for a second, so that one run's aftermath (a JVM's collection or compilation, a relay catching up) is not charged to the next.\n",
            super::run::SETTLE_MAX.as_secs(),
            super::run::SETTLED_BUSY_SHARE * 100.0
        );
        let _ = writeln!(
            out,
            "| run | machine busy | stolen | largest |\n|---|---|---|---|"
        );
        for (label, share) in runs {
            let named: Vec<String> = self
                .components_by_cores(share)
                .iter()
                .take(3)
                .map(|(name, cores)| format!("{name} {:.0}%", cores * 100.0))
                .collect();
            let _ = writeln!(
                out,
                "| {label} | {:.0}% | {} | {} |",
                self.busy_percent(share),
                stolen_percent(share),
                named.join(", ")
            );
        }
        out.push('\n');
    }

    pub(super) fn cpu_markdown(&self, out: &mut String) {
        let runs: Vec<(&str, String)> = vec![
            (
                "fixed rate",
                format!("checkout at {}/s", self.args.order_rate),
            ),
            ("sustained", "checkout sustained".to_owned()),
            ("hot product", "hot product".to_owned()),
        ];
        let _ = writeln!(out, "\n## 6. Where the CPU goes\n");
        let _ = writeln!(
            out,
            "CPU time of each process (group) during each checkout run, from `/proc/<pid>/stat`, as the average share of one core while the run's order flows ran (from the first order to the last one finished: the load generator marks both, so registering its customers, stocking the products and the audit afterwards are left out; the hot-product run is counted from start to exit; the machine has {} cores). For the checkout runs, also milliseconds of CPU per order paid: that share divided by the run's rate of paid orders. \"machine\" is every process on the machine (`/proc/stat`), the load generator included.\n",
            self.machine.cores
        );
        let mut header = "| process |".to_owned();
        let mut rule = "|---|".to_owned();
        for (name, _) in &runs {
            let _ = write!(header, " {name} |");
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        let paid_per_sec = |name: &str| match name {
            "fixed rate" => self.checkout_rate.paid_per_sec,
            "sustained" => self.checkout_sustained.paid_per_sec,
            _ => 0.0,
        };
        let cell = |name: &str, cores: f64| {
            let rate = paid_per_sec(name);
            if rate > 0.0 {
                format!(
                    "{:.0}% ({:.1} ms/order)",
                    cores * 100.0,
                    cores * 1000.0 / rate
                )
            } else {
                format!("{:.0}%", cores * 100.0)
            }
        };
        let mut rows: Vec<(f64, String)> = Vec::new();
        for (index, component) in self.memory.components.iter().enumerate() {
            let mut line = format!("| {} |", component.name);
            let mut weight = 0.0;
            for (name, label) in &runs {
                match self.memory.cpu_of(label) {
                    Some(share) => {
                        let cores = share.cores.get(index).copied().unwrap_or_default();
                        weight += cores;
                        let _ = write!(line, " {} |", cell(name, cores));
                    }
                    None => line.push_str(" - |"),
                }
            }
            rows.push((weight, line));
        }
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, line) in rows {
            let _ = writeln!(out, "{line}");
        }
        let mut machine = "| machine (all processes) |".to_owned();
        for (name, label) in &runs {
            match self.memory.cpu_of(label) {
                Some(share) => {
                    let _ = write!(machine, " {} |", cell(name, share.machine_cores));
                }
                None => machine.push_str(" - |"),
            }
        }
        let _ = writeln!(out, "{machine}");
        if let Some(share) = self.memory.cpu_of("checkout sustained") {
            let top = self
                .memory
                .components
                .iter()
                .zip(&share.cores)
                .max_by(|a, b| a.1.total_cmp(b.1));
            if let Some((component, cores)) = top {
                let _ = writeln!(
                    out,
                    "\nIn the sustained run the machine was {:.0}% busy; the largest single consumer was {} ({:.0}% of a core).",
                    self.busy_percent(share),
                    component.name,
                    cores * 100.0
                );
            }
        }
    }

    pub(super) fn checkout_markdown(&self, out: &mut String) {
        let r = &self.checkout_rate;
        let s = &self.checkout_sustained;
        let _ = writeln!(out, "\n## 3. Checkout saga\n");
        let _ = writeln!(
            out,
            "Through the gateway, per order: `POST /api/orders` (one unit of one of {} \
             products, each given extra stock first) -> follow the order's live status \
             (`GET /api/orders/{{id}}/events`, Server-Sent Events) until `AWAITING_PAYMENT` -> \
             `POST /api/payments` (test card 4242..., an `Idempotency-Key`) -> on the same \
             stream until `PAID`. Orders are spread over {} customers. Asynchronous steps are \
             seen when order-service pushes them (a buyer polls every poll interval only if its \
             stream fails, and between payment retries). Fixed rate: orders started at fixed \
             times, latency from the due time. Sustained: {} order flows back to back; \
             orders/s counts orders `PAID` within the run. Every order passes order-service's \
             risk check (the `order-risk` table, evaluated in-process), but the review it can \
             lead to is set out of reach (`ORDER_REVIEW_AMOUNT` = i64::MAX): a few accounts \
             placing hundreds of orders an hour, some above 10,000.00, would otherwise be held \
             for an admin by the table's velocity and amount rules, which is the shop working \
             as meant but not a checkout to time. Before the measured runs, {} s of the \
             sustained run's flows, unmeasured, bring the stack to a working temperature (the \
             JVMs' compiled hot paths, the services' caches and pools): on a stack started \
             moments before, the first fixed-rate seconds measure a cold start.\n",
            r.products,
            r.users,
            s.concurrency.unwrap_or_default(),
            self.plan.checkout_warmup
        );
        let _ = writeln!(
            out,
            "| run | duration | started | paid | orders/s paid | rejected | cancelled | shed (503 busy) | failed | create->PAID p50 | p90 | p99 | max |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, c) in [
            (
                format!(
                    "fixed rate {}/s (fallback poll {} ms)",
                    r.target_rate.unwrap_or_default(),
                    r.poll_interval_ms
                ),
                r,
            ),
            (
                format!(
                    "sustained, {} flows (fallback poll {} ms)",
                    s.concurrency.unwrap_or_default(),
                    s.poll_interval_ms
                ),
                s,
            ),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {:.0} s | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.duration_secs,
                c.started,
                c.paid,
                c.paid_per_sec,
                c.rejected,
                c.cancelled,
                c.shed,
                c.failed,
                format_ms(c.total.p50_ms),
                format_ms(c.total.p90_ms),
                format_ms(c.total.p99_ms),
                format_ms(c.total.max_ms),
            );
        }
        let _ = writeln!(out, "\nWhere the time goes (p50 / p99 of each step):\n");
        let _ = writeln!(
            out,
            "| step | what it covers | fixed rate | sustained |\n|---|---|---|---|"
        );
        let steps: [(&str, &str, &LatencySummary, &LatencySummary); 4] = [
            (
                "create call",
                "`POST /api/orders` answered (priced from the replica, stored, outbox)",
                &r.create_call,
                &s.create_call,
            ),
            (
                "reservation",
                "order.created -> product-service reserves -> inventory.reserved -> `AWAITING_PAYMENT`",
                &r.reservation,
                &s.reservation,
            ),
            (
                "payment call",
                "`POST /api/payments` answered (payment-service -> psp-sim), retries on 409 included",
                &r.payment_call,
                &s.payment_call,
            ),
            (
                "settlement",
                "payment.succeeded -> order-service -> `PAID`",
                &r.settlement,
                &s.settlement,
            ),
        ];
        for (name, what, a, b) in steps {
            let _ = writeln!(
                out,
                "| {name} | {what} | {} / {} | {} / {} |",
                format_ms(a.p50_ms),
                format_ms(a.p99_ms),
                format_ms(b.p50_ms),
                format_ms(b.p99_ms)
            );
        }
        let _ = writeln!(out);
        for (name, c, steps) in [
            (
                "fixed rate",
                r,
                [
                    &r.create_call,
                    &r.reservation,
                    &r.payment_call,
                    &r.settlement,
                ],
            ),
            (
                "sustained",
                s,
                [
                    &s.create_call,
                    &s.reservation,
                    &s.payment_call,
                    &s.settlement,
                ],
            ),
        ] {
            if c.paid == 0 {
                let _ = writeln!(out, "- {name}: no order reached `PAID`.");
                continue;
            }
            let names = [
                "the create call",
                "the reservation",
                "the payment call",
                "the settlement",
            ];
            let total: f64 = steps.iter().map(|s| s.p50_ms).sum();
            let (largest, share) = steps.iter().enumerate().map(|(i, s)| (i, s.p50_ms)).fold(
                (0, 0.0),
                |best, (i, v)| if v > best.1 { (i, v) } else { best },
            );
            let _ = writeln!(
                out,
                "- {name}: the largest step is {} (p50 {}, {} of the summed step medians).",
                names[largest],
                format_ms(share),
                ratio(share, total)
            );
        }
        for c in [r, s] {
            if !c.failures.is_empty() {
                let reasons: Vec<String> = c
                    .failures
                    .iter()
                    .map(|(k, v)| format!("{k} x{v}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "- {} run failures: {}; first: `{}`",
                    c.mode,
                    reasons.join(", "),
                    c.first_failure.as_deref().unwrap_or("-").replace('|', "/")
                );
            }
        }
    }
}

/// A rate: whole numbers from 10 up, one decimal below (slow listings).
pub(super) fn per_sec(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

pub(super) fn signed_ms(ms: f64) -> String {
    if ms < 0.0 {
        format!("-{}", format_ms(-ms))
    } else {
        format!("+{}", format_ms(ms))
    }
}

/// The share of a run's CPU time the hypervisor took, as the report prints it.
pub(super) fn stolen_percent(share: &CpuShare) -> String {
    share.stolen.map_or_else(
        || "n/a".to_owned(),
        |stolen| format!("{:.1}%", stolen * 100.0),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run(label: &str, ok_per_sec: f64, p99_ms: f64, rate: Option<f64>) -> RunReport {
        RunReport {
            label: label.into(),
            mode: if rate.is_some() {
                "fixed-rate"
            } else {
                "saturation"
            }
            .into(),
            connections: 16,
            duration_secs: 10.0,
            target_rate: rate,
            ok: (ok_per_sec * 10.0) as u64,
            non_2xx: 0,
            errors: 0,
            missed: 0,
            ok_per_sec,
            latency: LatencySummary {
                count: 100,
                p50_ms: p99_ms / 4.0,
                p90_ms: p99_ms / 2.0,
                p99_ms,
                p999_ms: p99_ms * 2.0,
                max_ms: p99_ms * 3.0,
            },
            service_time: LatencySummary::default(),
            statuses: BTreeMap::new(),
            first_error: None,
        }
    }

    fn checkout(mode: &str, rate: Option<f64>, reservation_ms: f64) -> CheckoutReport {
        let step = |ms: f64| LatencySummary {
            count: 50,
            p50_ms: ms,
            p90_ms: ms * 1.5,
            p99_ms: ms * 2.0,
            p999_ms: ms * 2.0,
            max_ms: ms * 3.0,
        };
        CheckoutReport {
            mode: mode.into(),
            concurrency: rate.is_none().then_some(16),
            target_rate: rate,
            duration_secs: 60.0,
            poll_interval_ms: 10.0,
            users: 8,
            products: 32,
            started: 300,
            paid: 299,
            paid_per_sec: 4.9,
            rejected: 0,
            cancelled: 0,
            shed: 0,
            failed: 1,
            total: step(reservation_ms + 30.0),
            create_call: step(5.0),
            reservation: step(reservation_ms),
            payment_call: step(15.0),
            settlement: step(10.0),
            failures: BTreeMap::from([("payment answered 409 Conflict".to_owned(), 1)]),
            first_failure: Some("payment answered 409 Conflict: {}".into()),
            popularity: "zipf s=1".into(),
            top_product_share: 0.17,
            audit: Some(loadgen::audit::AuditReport {
                passed: true,
                orders: 300,
                statuses: BTreeMap::from([("PAID".to_owned(), 299)]),
                settle_secs: 0.5,
                products: 32,
                paid_units: 299,
                sold_units: 299,
                charges_kept: 299,
                refunds: 0,
                receipts_expected: 299,
                receipts_found: 299,
                violations: Vec::new(),
                ..loadgen::audit::AuditReport::default()
            }),
        }
    }

    #[test]
    fn the_report_states_every_target_and_section() {
        let args = BenchArgs {
            quick: true,
            seconds: None,
            checkout_seconds: None,
            checkout_warmup: None,
            connections: 16,
            loadgen_threads: 1,
            order_rate: 5.0,
            order_products: 200,
            hot_orders: 2_000,
            hot_stock: 500,
            order_concurrency: 16,
            products: 1_000,
            large_products: 100_000,
            trace_ratio: 0.01,
            output: PathBuf::from("docs/BENCHMARKS.md"),
        };
        let plan = Plan::new(&args);
        let mut memory = MemoryLog {
            components: vec![
                Component {
                    name: "postgres".into(),
                    pid: 1,
                    ours: false,
                },
                Component {
                    name: "gateway".into(),
                    pid: 2,
                    ours: true,
                },
                Component {
                    name: "product-service".into(),
                    pid: 3,
                    ours: true,
                },
                Component {
                    name: "hello-server (ceiling)".into(),
                    pid: 4,
                    ours: false,
                },
            ],
            phase: Phase::Idle,
            figures: BTreeMap::new(),
            cpu: vec![
                (
                    "checkout sustained".into(),
                    CpuShare {
                        cores: vec![0.25, 0.5],
                        machine_cores: 1.9,
                        stolen: Some(0.02),
                    },
                ),
                (
                    super::super::run::CHECKOUT_WARMUP.into(),
                    CpuShare {
                        cores: vec![0.25, 0.5],
                        machine_cores: 1.9,
                        stolen: Some(0.02),
                    },
                ),
                (
                    "search".into(),
                    CpuShare {
                        cores: vec![0.1, 0.7],
                        machine_cores: 1.6,
                        stolen: Some(0.02),
                    },
                ),
                (
                    "hello-server".into(),
                    CpuShare {
                        cores: vec![0.0, 0.0, 0.0, 0.8],
                        machine_cores: 1.8,
                        stolen: Some(0.02),
                    },
                ),
                (
                    "direct".into(),
                    CpuShare {
                        cores: vec![0.0, 0.0, 1.2],
                        machine_cores: 1.8,
                        stolen: Some(0.02),
                    },
                ),
                (
                    "via gateway".into(),
                    CpuShare {
                        cores: vec![0.0, 0.8, 0.6],
                        machine_cores: 1.8,
                        stolen: Some(0.02),
                    },
                ),
            ],
            trees: Default::default(),
        };
        memory.figures.insert(
            (0, Phase::Idle),
            Memory {
                kib: 200 * 1024,
                processes: 9,
            },
        );
        memory.figures.insert(
            (1, Phase::Reads),
            Memory {
                kib: 30 * 1024,
                processes: 1,
            },
        );
        let mut report = Report {
            stolen: Some(0.012),
            machine: Machine {
                cores: 2,
                memory: "8.0 GiB".into(),
                cpu: "Test CPU".into(),
                kernel: "6.1".into(),
                rustc: "rustc 1.95.0".into(),
                date: "2026-11-26 12:00 UTC".into(),
                load: "1.0 1.0 1.0".into(),
                commit: "abc1234".into(),
                ticks_at_start: None,
                orders_at_start: Some(125_000),
            },
            command_line: "cargo xtask bench --quick".into(),
            plan: &plan,
            args: &args,
            overhead: Overhead {
                hello_sat: run("hello", 40_000.0, 2.0, None),
                direct_sat: run("direct", 10_000.0, 5.0, None),
                gateway_sat: run("gateway", 8_000.0, 6.0, None),
                direct_half: run("direct 50%", 4_000.0, 1.0, Some(4_000.0)),
                gateway_half: run("gateway 50%", 4_000.0, 1.5, Some(4_000.0)),
            },
            catalog: Catalog {
                by_id_sat: run("by id", 7_000.0, 8.0, None),
                by_id_half: run("by id 50%", 3_500.0, 2.0, Some(3_500.0)),
                reads: CatalogReads {
                    listing_sat: run("listing", 5.0, 900.0, None),
                    listing_half: run("listing 50%", 2.5, 500.0, Some(2.5)),
                    search_sat: run("search", 4_000.0, 8.0, None),
                    search_half: run("search 50%", 2_000.0, 3.0, Some(2_000.0)),
                    search_fresh_sat: run("search afresh", 1_500.0, 10.0, None),
                    search_fresh_half: run("search afresh 50%", 750.0, 5.0, Some(750.0)),
                    suggest_sat: run("suggest", 6_000.0, 4.0, None),
                    suggest_half: run("suggest 50%", 3_000.0, 2.0, Some(3_000.0)),
                },
            },
            storefront: Ok(StorefrontFigures {
                first_page_js_bytes: 99_000.0,
                home_ms: 480.0,
                search_ms: 520.0,
                live_update_p50_ms: 20.0,
                live_update_max_ms: 40.0,
                live_updates: 10,
            }),
            large: Some(LargeCatalog {
                products: 100_000,
                seeded: seed::Seeded {
                    created: 99_000,
                    existing: 1_000,
                },
                seed_seconds: 500.0,
                ready_seconds: 12.5,
                rss_loaded_kib: Some(200 * 1024),
                rss_after_kib: Some(210 * 1024),
                reads: CatalogReads {
                    listing_sat: run("listing (100000)", 900.0, 30.0, None),
                    listing_half: run("listing 50% (100000)", 450.0, 12.0, Some(450.0)),
                    search_sat: run("search (100000)", 800.0, 30.0, None),
                    search_half: run("search 50% (100000)", 400.0, 14.0, Some(400.0)),
                    search_fresh_sat: run("search afresh (100000)", 300.0, 60.0, None),
                    search_fresh_half: run("search afresh 50% (100000)", 150.0, 20.0, Some(150.0)),
                    suggest_sat: run("suggest (100000)", 3_000.0, 8.0, None),
                    suggest_half: run("suggest 50% (100000)", 1_500.0, 4.0, Some(1_500.0)),
                },
            }),
            checkout_rate: checkout("fixed-rate", Some(5.0), 120.0),
            checkout_sustained: checkout("sustained", None, 400.0),
            hot: HotReport {
                orders: 2000,
                stock: 500,
                concurrency: 64,
                reserved: 500,
                rejected: 1500,
                busy_refusals: 0,
                failed: 0,
                first_failure: None,
                elapsed_secs: 10.0,
                decided_per_sec: 200.0,
                decision: LatencySummary::default(),
                create_call: LatencySummary::default(),
                after: loadgen::audit::Units {
                    available: 0,
                    reserved: 500,
                    sold: 0,
                },
                exact: true,
            },
            costs: OrderCosts {
                orders: 299,
                window_secs: 10.0,
                kafka_records: 9.0,
                pg_commits: 12.0,
                mongo_writes: 15.0,
                mongo_commits: 10.0,
                mongo_writes_by_namespace: vec![
                    ("catalog.products".into(), 4.5),
                    ("payments.payments".into(), 4.0),
                ],
                mongo_commands: vec![
                    ("find payments.orders".into(), 2.5),
                    ("update payments.orders".into(), 2.0),
                ],
            },
            limits: capacity::Limits {
                pg_commits_per_sec: 3600.0,
                kafka_records_per_sec: 26000.0,
            },
            mongo: MongoFigures {
                products: 1000,
                find_by_id_ms: Quantiles { p50: 0.2, p99: 1.5 },
                listing_ms: Quantiles { p50: 2.3, p99: 5.0 },
                guarded_updates_per_s: UpdateRates {
                    serial: 900.0,
                    clients_8: 1400.0,
                },
            },
            memory: &memory,
        };
        let md = report.markdown();
        for needle in [
            "## Targets",
            "| through-gateway throughput >= 70% of direct | 80% (8000 vs 10000 req/s) | met |",
            "| p99 added by the gateway < 1 ms at 50% load | 500 µs",
            "largest: gateway, 30.0 MB | met |",
            "## 1. Gateway overhead",
            "## 2. Catalog reads through the gateway",
            "### The same reads over 100000 products",
            "### The storefront in a browser",
            "| JavaScript on the first page <= 150 KB gzipped | 96.7 KB | met |",
            "| time to a ready replica (stop, start, load 100000 products, ready) | 12.5 s |",
            "| listings of 20 (100000 products) >= 3,000 req/s",
            "## 3. Checkout saga",
            "the largest step is the reservation",
            "## 4. Memory",
            "| postgres * | 200.0 MB (9 proc.) | - | - |",
            "## 5. The MongoDB-wire server",
            "| sorted listing of 20 | 2.30 ms | 5.00 ms |",
            "| 8 clients | 1400 |",
            "| sustained checkout >= 150 orders/s PAID, 0 failed | 4.9 orders/s, 1 failed, 0 shed | **not met** |",
            "200 reserved".replace("200", "500").as_str(),
            "| invariants after the checkout runs (stock, charges, receipts) | hold | met |",
            "| PostgreSQL commits | 12.0 | 3600 commits/s | 300 orders/s |",
            "MongoDB-wire write commands per paid order by collection: `catalog.products` 4.50, `payments.payments` 4.00.",
            "MongoDB-wire commands per paid order, reads included: 4.5; the largest: `find payments.orders` 2.50, `update payments.orders` 2.00.",
            "## 6. Where the CPU goes",
            "| search, saturation | max |",
            "| search of 20 (1000 products) >= 3,000 req/s",
            "matches computed afresh for every request: 1500 req/s",
            "| gateway | - | 50% (",
            "the largest single consumer was gateway (50% of a core)",
            "`cargo xtask bench --quick`",
            "export a share of 0.01 of the traces",
            "checkout 10 s per run, after 5 s of unmeasured checkout |",
            "Before the measured runs, 5 s of the sustained run's flows, unmeasured",
            "| search | 80% | 2.0% | gateway 70%, postgres 10% |",
            "| orders the stack held at start | 125000 (an aged stack",
            "## What holds the targets that are not met",
            "the machine was 95% busy and spent 387.8 ms of CPU per paid order",
            "150 orders/s on 2 cores leaves at most 13.3 ms per order",
            "The largest shares per paid order: gateway 102.0 ms, postgres 51.0 ms.",
            "The fixed rate's latency: each step's tail is its wait in a queue: p99 create call 10 ms, reservation 240 ms, payment call 30 ms",
            "| listings of 20 (1000 products), 50% | 500 ms | 15 ms | 0 µs | n/a | n/a |",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
        }
        // Targets that were met are not explained: the gateway's ratio (80%) and every
        // half-load tail but the listing's.
        assert!(!md.contains("the second hop's CPU"), "{md}");
        assert!(!md.contains("| suggestions, 50% |"), "{md}");
        // The warm-up is a checkout run, not one of the HTTP runs' CPU rows.
        assert!(!md.contains("| checkout warm-up |"), "{md}");
        assert_eq!(report.summary().len(), 4);

        // Through the gateway at half the direct rate: its CPU per request is set against what
        // 70% would allow.
        report.overhead.gateway_sat.ok_per_sec = 5_000.0;
        let md = report.markdown();
        for needle in [
            "| through-gateway throughput >= 70% of direct | 50% (5000 vs 10000 req/s) | **not met** |",
            "Both saturation runs kept the machine busy (90% directly, 90% through the gateway)",
            "directly 180 µs over the machine (product-service 120 µs), through the gateway 360 µs (gateway 160 µs, product-service 120 µs)",
            "70% of direct allows 257 µs per request, so the second hop may cost 77 µs and cost 180 µs.",
            "at the bare hello server's 20 µs per request on each of its two sides, with product-service's 0 µs more per request when fed through a hop, would make 82% of direct",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
        }
    }

    #[test]
    fn formats_ratios_and_differences() {
        assert_eq!(ratio(7.0, 10.0), "70%");
        assert_eq!(ratio(1.0, 0.0), "n/a");
        assert_eq!(signed_ms(-0.25), "-250 µs");
        assert_eq!(signed_ms(1.5), "+1.50 ms");
        let mut share = CpuShare {
            cores: Vec::new(),
            machine_cores: 1.0,
            stolen: Some(0.0345),
        };
        assert_eq!(stolen_percent(&share), "3.5%");
        share.stolen = None;
        assert_eq!(stolen_percent(&share), "n/a");
    }
}

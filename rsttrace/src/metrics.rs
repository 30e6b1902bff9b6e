//! Prometheus metrics on `/metrics`: prometheus-client for the registry and text format, hyper
//! for HTTP. Fleet-wide aggregation is Prometheus' job; ours is to be scraped cheaply.
use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        atomic::{AtomicI64, AtomicU64},
        Arc,
    },
};

use anyhow::Context;
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::report::{Direction, Report, ReportType};

/// Distinct `comm` label values, and distinct (`unit`, `container`) pairs; later ones are counted
/// under `other`, so a fork storm or a churn of short-lived containers cannot blow up the series
/// count.
const MAX_COMMS: usize = 64;
const MAX_WORKLOADS: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResetLabels {
    direction: String,
    cause: String,
    origin: String,
    comm: String,
    /// The socket's systemd unit, `-` when none.
    unit: String,
    /// The socket's container, its id's first 12 digits as docker and crictl show it; `-` when none.
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

pub struct Metrics {
    registry: Arc<Registry>,
    resets: Family<ResetLabels, Counter>,
    aborts: Family<CauseLabels, Counter>,
    lost: Counter<u64, AtomicU64>,
    folded: Counter<u64, AtomicU64>,
    held: Gauge<i64, AtomicI64>,
    comms: HashSet<String>,
    workloads: HashSet<(String, String)>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let resets = Family::<ResetLabels, Counter>::default();
        let aborts = Family::<CauseLabels, Counter>::default();
        let lost = Counter::<u64, AtomicU64>::default();
        let folded = Counter::<u64, AtomicU64>::default();
        let held = Gauge::<i64, AtomicI64>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register("rsttrace_resets", "TCP resets sent or received, by cause, owning process and workload", resets.clone());
        registry.register("rsttrace_aborts", "Connections that died without a RST (timeouts), by cause", aborts.clone());
        registry.register("rsttrace_events_lost", "Kernel events dropped: the ring buffer was full, or the kernel skipped a program run", lost.clone());
        registry.register(
            "rsttrace_reports_folded",
            "Reports over --max-rate written only as part of a folded record (rsttrace_resets_total and rsttrace_aborts_total count them all the same)",
            folded.clone(),
        );
        registry.register("rsttrace_reports_held", "Resets and timeouts held for their follow-up events", held.clone());
        registry.register("rsttrace_build_info", "rsttrace version", build.clone());
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        Self { registry: Arc::new(registry), resets, aborts, lost, folded, held, comms: HashSet::new(), workloads: HashSet::new() }
    }

    /// `count` reports like `r` (more than one where the kernel side counted them).
    pub fn record(&mut self, r: &Report, count: u64) {
        match r.kind {
            ReportType::Abort => {
                self.aborts.get_or_create(&CauseLabels { cause: r.verdict.cause.name().into() }).inc_by(count);
            }
            ReportType::Reset => {
                let comm = r.owner.as_ref().map_or("-", |o| o.comm.as_str());
                let comm = if self.comms.contains(comm) || self.comms.len() < MAX_COMMS {
                    self.comms.insert(comm.to_string());
                    comm.to_string()
                } else {
                    "other".to_string()
                };
                let w = r.workload.as_deref();
                let workload = (
                    w.and_then(|w| w.unit.clone()).unwrap_or_else(|| "-".into()),
                    w.and_then(|w| w.container_id.as_ref().map(|id| id[..12].to_string())).unwrap_or_else(|| "-".into()),
                );
                let (unit, container) = if self.workloads.contains(&workload) || self.workloads.len() < MAX_WORKLOADS {
                    self.workloads.insert(workload.clone());
                    workload
                } else {
                    ("other".into(), "other".into())
                };
                let direction = r.direction.unwrap_or(Direction::Received).name();
                self.resets
                    .get_or_create(&ResetLabels {
                        direction: direction.into(),
                        cause: r.verdict.cause.name().into(),
                        origin: r.verdict.origin.name().into(),
                        comm,
                        unit,
                        container,
                    })
                    .inc_by(count);
            }
        }
    }

    pub fn add_lost(&self, n: u64) {
        self.lost.inc_by(n);
    }

    /// Reports that went out folded (see `fold`).
    pub fn add_folded(&self, n: u64) {
        self.folded.inc_by(n);
    }

    pub fn set_held(&self, n: usize) {
        self.held.set(n as i64);
    }

    /// Bind now (so a busy address is a start-up error) and serve in the background.
    pub async fn serve(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics {addr}: cannot listen there (address in use or not local?)"))?;
        let registry = self.registry.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let registry = registry.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let registry = registry.clone();
                        async move { Ok::<_, std::convert::Infallible>(respond(&registry, req.uri().path())) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(())
    }
}

fn respond(registry: &Registry, path: &str) -> Response<Full<Bytes>> {
    if path != "/metrics" {
        let mut not_found = Response::new(Full::new(Bytes::from_static(b"try /metrics\n")));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        return not_found;
    }
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
        let mut failed = Response::new(Full::new(Bytes::from_static(b"encoding failed\n")));
        *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return failed;
    }
    let mut ok = Response::new(Full::new(Bytes::from(body)));
    ok.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    ok
}

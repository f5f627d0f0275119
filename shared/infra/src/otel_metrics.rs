//! OpenTelemetry metrics: the same `metrics` calls that feed the Prometheus endpoint,
//! exported over OTLP/HTTP to the collector.
//!
//! The code records through the `metrics` facade only ([`crate::metrics_spec::names`]);
//! [`OtelRecorder`] is one more recorder behind it, next to Prometheus's, that turns
//! each metric into an OpenTelemetry instrument of the same name: counters into
//! monotonic sums, histograms into explicit-bucket histograms with the buckets the
//! Prometheus endpoint uses, gauges into observable gauges (the `metrics` gauge can go
//! up and down by deltas, which an OpenTelemetry gauge cannot, so we keep the value and
//! report it at each collection). A periodic reader pushes cumulative totals every
//! `telemetry.metrics_interval_ms` and once more at shutdown.

use crate::otlp::{OwnRuntimeClient, EXPORT_TIMEOUT};
pub use crate::otlp::{metrics_url, OtelError, OTLP_METRICS_PATH};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The meter name (instrumentation scope) of every mono2mesh metric.
pub const METER_NAME: &str = "mono2mesh";

/// The meter provider behind the global recorder, kept to flush and shut it down.
static PROVIDER: Mutex<Option<SdkMeterProvider>> = Mutex::new(None);

/// A meter provider for this process, named `service_name`, pushing to `endpoint`
/// every `interval`. Not registered anywhere: see [`install`] for the process-wide one.
pub fn meter_provider(service_name: &str, endpoint: &str, interval: Duration) -> Result<SdkMeterProvider, OtelError> {
    let client = OwnRuntimeClient::new().map_err(|e| OtelError::Exporter(e.to_string()))?;
    let exporter = MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(metrics_url(endpoint)?)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| OtelError::Exporter(e.to_string()))?;
    let reader = PeriodicReader::builder(exporter).with_interval(interval).build();
    let resource = Resource::builder().with_service_name(service_name.to_string()).build();
    Ok(SdkMeterProvider::builder().with_resource(resource).with_reader(reader).build())
}

/// Builds the process's meter provider (kept for [`flush`] and [`shutdown`]) and
/// returns the recorder that feeds it.
pub fn install(service_name: &str, endpoint: &str, interval: Duration) -> Result<OtelRecorder, OtelError> {
    let provider = meter_provider(service_name, endpoint, interval)?;
    let recorder = OtelRecorder::new(provider.meter(METER_NAME));
    *PROVIDER.lock().unwrap_or_else(|p| p.into_inner()) = Some(provider);
    Ok(recorder)
}

/// Exports every metric now. Blocks until the exporter answered: call it off the
/// async threads.
pub fn flush() {
    let provider = PROVIDER.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(provider) = provider {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "flushing metrics failed");
        }
    }
}

/// Exports a last time and stops the reader, at process end.
pub fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(provider) = provider {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "shutting the metrics exporter down failed");
        }
    }
}

/// What `describe_*` said of a metric, applied when its instrument is created.
#[derive(Clone, Default)]
struct Description {
    unit: Option<Unit>,
    text: Option<SharedString>,
}

/// One gauge name: the current value of each label set, read at collection time (each
/// set is added once, when its key is first registered).
type GaugeValues = Arc<Mutex<Vec<(Vec<KeyValue>, Arc<GaugeCell>)>>>;

#[derive(Default)]
struct Instruments {
    descriptions: HashMap<String, Description>,
    counters: HashMap<String, opentelemetry::metrics::Counter<u64>>,
    histograms: HashMap<String, opentelemetry::metrics::Histogram<f64>>,
    gauges: HashMap<String, (GaugeValues, opentelemetry::metrics::ObservableGauge<f64>)>,
    /// Handles already handed out, so the `counter!` macro (which registers on every
    /// call) costs a map lookup, not an instrument lookup and an attribute copy.
    counter_handles: HashMap<Key, Counter>,
    histogram_handles: HashMap<Key, Histogram>,
    gauge_handles: HashMap<Key, Gauge>,
}

/// A `metrics` recorder writing to OpenTelemetry instruments of one meter.
pub struct OtelRecorder {
    meter: Meter,
    instruments: Mutex<Instruments>,
}

impl std::fmt::Debug for OtelRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelRecorder").finish_non_exhaustive()
    }
}

impl OtelRecorder {
    pub fn new(meter: Meter) -> OtelRecorder {
        OtelRecorder { meter, instruments: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instruments> {
        self.instruments.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.lock().descriptions.insert(key.as_str().to_string(), Description { unit, text: Some(text) });
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels().map(|l| KeyValue::new(l.key().to_string(), l.value().to_string())).collect()
}

/// UCUM units, as OpenTelemetry expects them.
fn ucum(unit: Unit) -> Option<&'static str> {
    match unit {
        Unit::Seconds => Some("s"),
        Unit::Milliseconds => Some("ms"),
        Unit::Bytes => Some("By"),
        Unit::Count => Some("1"),
        _ => None,
    }
}

/// An instrument builder with the unit and help text `describe_*` gave (the builders
/// share these methods but no trait).
macro_rules! described {
    ($builder:expr, $description:expr) => {{
        let mut builder = $builder;
        if let Some(unit) = $description.unit.and_then(ucum) {
            builder = builder.with_unit(unit);
        }
        if let Some(text) = $description.text {
            builder = builder.with_description(text.into_owned());
        }
        builder
    }};
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        let mut state = self.lock();
        if let Some(handle) = state.counter_handles.get(key) {
            return handle.clone();
        }
        let name = key.name().to_string();
        let description = state.descriptions.get(&name).cloned().unwrap_or_default();
        let instrument = state
            .counters
            .entry(name.clone())
            .or_insert_with(|| {
                described!(self.meter.u64_counter(name), description).build()
            })
            .clone();
        let handle = Counter::from_arc(Arc::new(OtelCounter {
            instrument,
            attributes: attributes(key),
            total: AtomicU64::new(0),
        }));
        state.counter_handles.insert(key.clone(), handle.clone());
        handle
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        let mut state = self.lock();
        if let Some(handle) = state.gauge_handles.get(key) {
            return handle.clone();
        }
        let name = key.name().to_string();
        let description = state.descriptions.get(&name).cloned().unwrap_or_default();
        let (values, _) = state.gauges.entry(name.clone()).or_insert_with(|| {
            let values = GaugeValues::default();
            let observed = values.clone();
            let builder = self.meter.f64_observable_gauge(name).with_callback(move |observer| {
                for (attributes, cell) in observed.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    observer.observe(cell.get(), attributes);
                }
            });
            (values, described!(builder, description).build())
        });
        let cell = Arc::new(GaugeCell::default());
        values.lock().unwrap_or_else(|p| p.into_inner()).push((attributes(key), cell.clone()));
        let handle = Gauge::from_arc(cell);
        state.gauge_handles.insert(key.clone(), handle.clone());
        handle
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        let mut state = self.lock();
        if let Some(handle) = state.histogram_handles.get(key) {
            return handle.clone();
        }
        let name = key.name().to_string();
        let description = state.descriptions.get(&name).cloned().unwrap_or_default();
        let instrument = state
            .histograms
            .entry(name.clone())
            .or_insert_with(|| {
                let buckets = crate::metrics_spec::buckets_for(&name);
                let mut builder = described!(self.meter.f64_histogram(name), description);
                if let Some(buckets) = buckets {
                    builder = builder.with_boundaries(buckets.to_vec());
                }
                builder.build()
            })
            .clone();
        let handle = Histogram::from_arc(Arc::new(OtelHistogram { instrument, attributes: attributes(key) }));
        state.histogram_handles.insert(key.clone(), handle.clone());
        handle
    }
}

struct OtelCounter {
    instrument: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    /// What was added so far, to turn `absolute` into the delta OpenTelemetry takes.
    total: AtomicU64,
}

impl metrics::CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
        self.instrument.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let before = self.total.fetch_max(value, Ordering::Relaxed);
        if value > before {
            self.instrument.add(value - before, &self.attributes);
        }
    }
}

struct OtelHistogram {
    instrument: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl metrics::HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.instrument.record(value, &self.attributes);
    }
}

/// A gauge's current value (f64 bits), changed by deltas or set outright.
#[derive(Default)]
struct GaugeCell(AtomicU64);

impl GaugeCell {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn update(&self, f: impl Fn(f64) -> f64) {
        // fetch_update retries on contention; the closure never refuses.
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some(f(f64::from_bits(bits)).to_bits()));
    }
}

impl metrics::GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_cells_follow_deltas_and_sets() {
        use metrics::GaugeFn;
        let cell = GaugeCell::default();
        cell.increment(2.0);
        cell.decrement(0.5);
        assert_eq!(cell.get(), 1.5);
        cell.set(-3.0);
        cell.increment(1.0);
        assert_eq!(cell.get(), -2.0);
    }
}

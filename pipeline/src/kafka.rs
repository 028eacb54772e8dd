//! Kafka (`KAFKA_BROKERS`) through rdkafka: the telemetry source (a consumer
//! group with manual commits only), the recommendations and dead-letter
//! sink, topic creation, and a producer for `replay --to-kafka`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message as _;
/// The producer type this crate's Kafka functions take.
pub use rdkafka::producer::FutureProducer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use crate::sink::{DeadLetter, Sink, WindowOutput};
use crate::source::{BoxFuture, Committer, Message, Position, Source};

/// Topic the telemetry arrives on.
pub const TELEMETRY_TOPIC: &str = "fleet.telemetry";
/// Topic invalid telemetry goes to, with the reason.
pub const DLQ_TOPIC: &str = "fleet.telemetry.dlq";
/// Topic recommendations go to (key = fleet id).
pub const RECOMMENDATIONS_TOPIC: &str = "fleet.recommendations";
/// Topic every state change of runs, recommendations and rebalancing
/// operations goes to (key = the aggregate's id, so one aggregate's events
/// stay in order on one partition).
pub const EVENTS_TOPIC: &str = "fleet.events";
/// Consumer group of the service.
pub const DEFAULT_GROUP: &str = "fleet-optimization";

/// The topics the service uses (the constants above, or prefixed ones for
/// isolated tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub telemetry: String,
    pub recommendations: String,
    pub dlq: String,
    pub events: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            telemetry: TELEMETRY_TOPIC.into(),
            recommendations: RECOMMENDATIONS_TOPIC.into(),
            dlq: DLQ_TOPIC.into(),
            events: EVENTS_TOPIC.into(),
        }
    }
}

impl Topics {
    /// The same names under `prefix.`.
    pub fn prefixed(prefix: &str) -> Self {
        let d = Topics::default();
        Topics {
            telemetry: format!("{prefix}.{}", d.telemetry),
            recommendations: format!("{prefix}.{}", d.recommendations),
            dlq: format!("{prefix}.{}", d.dlq),
            events: format!("{prefix}.{}", d.events),
        }
    }

    /// The default names, or under `prefix.` when one is given.
    pub fn named(prefix: Option<&str>) -> Self {
        prefix.map_or_else(Topics::default, Topics::prefixed)
    }

    pub fn all(&self) -> [&str; 4] {
        [
            &self.telemetry,
            &self.recommendations,
            &self.dlq,
            &self.events,
        ]
    }
}

fn kafka_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("Kafka {what}: {e}; check KAFKA_BROKERS and that the broker is up")
}

/// Creates `topics` with `partitions` partitions each, if missing.
pub async fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| kafka_error("admin client", e))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| kafka_error("create topics", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(kafka_error(&format!("create topic {topic}"), code)),
        }
    }
    Ok(())
}

/// A producer with delivery to all in-sync replicas, idempotent.
pub fn producer(brokers: &str) -> Result<FutureProducer, String> {
    producer_timing_out(brokers, Duration::from_secs(30))
}

/// The producer of the service's sinks: as [`producer`], but a send fails
/// after 10 s. The sinks then retry with a new producer, which is what a
/// broker that restarted without its state needs: it no longer knows the
/// old producer's id, and that producer's sends only fail (fenced) at their
/// timeout (measured: 30 s of the 35 s it took to catch up after such a
/// restart).
pub fn sink_producer(brokers: &str) -> Result<FutureProducer, String> {
    producer_timing_out(brokers, Duration::from_secs(10))
}

fn producer_timing_out(brokers: &str, timeout: Duration) -> Result<FutureProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create()
        .map_err(|e| kafka_error("producer", e))
}

/// Sends messages `(key, payload)` to `topic` and waits until the broker
/// has acknowledged every one (all are queued first, then awaited).
pub async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    messages: &[(String, Vec<u8>)],
) -> Result<(), String> {
    let mut pending = Vec::with_capacity(messages.len());
    for (key, payload) in messages {
        let mut record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        // A full local queue is backpressure: wait for deliveries, then retry.
        let future = loop {
            match producer.send_result(record) {
                Ok(f) => break f,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(kafka_error(&format!("send to {topic}"), e)),
            }
        };
        pending.push(future);
    }
    for f in pending {
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(kafka_error(&format!("send to {topic}"), e)),
            Err(_) => {
                return Err(kafka_error(
                    &format!("send to {topic}"),
                    "delivery cancelled",
                ))
            }
        }
    }
    Ok(())
}

/// Reads `fleet.telemetry` as a member of a consumer group; offsets are
/// committed only through its [`Source::committer`], never automatically.
///
/// A partition's log can start over: a broker restarted without its data
/// (or a topic re-created) numbers messages from the start again. Offsets
/// below what the broker held as committed for the group cannot be a
/// redelivery (a group resumes from its committed offset, which only moves
/// forward), so the first such message is marked
/// [`Message::log_restarted`] and the pipeline reads the new log as new
/// messages instead of skipping them as already processed. The committed
/// offsets are read back from the broker every few seconds
/// ([`KafkaSource::read_committed`]).
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SourceContext>>,
    topic: String,
    /// How long a batch waits for more messages after the first.
    linger: Duration,
    /// Where receive errors the consumer recovers from are reported.
    health: crate::health::Health,
    /// Every partition of the topic (from the broker's metadata), and when
    /// to ask again.
    topic_partitions: Vec<i32>,
    ask_at: Option<std::time::Instant>,
    /// Per partition, the highest offset delivered since the log's start.
    delivered: Vec<(i32, i64)>,
    /// When to read the group's committed offsets back next.
    read_committed_at: Option<std::time::Instant>,
}

/// The consumer's context: remembers, per partition, the offset the broker
/// last said it holds as committed for the group.
#[derive(Default)]
pub struct SourceContext {
    acked: Mutex<Vec<(i32, i64)>>,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {}

impl SourceContext {
    /// Records the offsets of `offsets` the broker holds as committed
    /// (librdkafka reports no result of a manual asynchronous commit, so
    /// they are read back: [`KafkaSource::read_committed`]).
    fn record(&self, offsets: &TopicPartitionList) {
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        for e in offsets.elements() {
            if let (Ok(()), Offset::Offset(offset)) = (e.error(), e.offset()) {
                match acked.iter_mut().find(|(p, _)| *p == e.partition()) {
                    Some(entry) => entry.1 = offset,
                    None => acked.push((e.partition(), offset)),
                }
            }
        }
    }

    fn acked(&self, partition: i32) -> Option<i64> {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked.iter().find(|(p, _)| *p == partition).map(|e| e.1)
    }

    fn forget(&self, partition: i32) {
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked.retain(|(p, _)| *p != partition);
    }
}

/// Whether the message at `at` starts its partition's log over, given the
/// highest offset delivered before on that partition (updated here).
fn log_restarted(context: &SourceContext, delivered: &mut Vec<(i32, i64)>, at: Position) -> bool {
    let entry = match delivered.iter_mut().find(|(p, _)| *p == at.partition) {
        Some(entry) => entry,
        None => {
            delivered.push((at.partition, at.offset));
            return false;
        }
    };
    if at.offset > entry.1 {
        entry.1 = at.offset;
        return false;
    }
    // At or below what was delivered: a redelivery, unless it lies below
    // the acknowledged commit. An acknowledgement above what this log
    // delivered is a late one of the old log (ignored).
    let restarted = context
        .acked(at.partition)
        .is_some_and(|acked| at.offset < acked && acked <= entry.1 + 1);
    if restarted {
        context.forget(at.partition);
        entry.1 = at.offset;
    }
    restarted
}

/// How often the topic's partition list is refreshed (partitions can be added).
const METADATA_EVERY: Duration = Duration::from_secs(60);

/// How often the group's committed offsets are read back from the broker.
const READ_COMMITTED_EVERY: Duration = Duration::from_secs(5);

/// Whether librdkafka recovers from `e` by itself (a broker that is down or
/// restarting, a topic that is being re-created): the source then waits and
/// receives again, keeping its place, instead of failing the pipeline.
fn transient(e: &rdkafka::error::KafkaError) -> bool {
    matches!(e, rdkafka::error::KafkaError::MessageConsumption(_))
}

/// The pause after a receive error (against a tight loop on one that repeats).
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// After receive errors, how long without a message or another error
/// before the broker is asked whether it is back.
const RECOVERY_PROBE: Duration = Duration::from_secs(1);

/// Component name of the consumer in [`crate::health::Health`].
pub const SOURCE_COMPONENT: &str = "kafka-source";

impl KafkaSource {
    pub fn new(brokers: &str, group: &str, topic: &str) -> Result<Self, String> {
        Self::with_options(brokers, group, topic, &[])
    }

    /// The same, with extra librdkafka consumer settings, e.g.
    /// `max.partition.fetch.bytes` (smaller: partitions are delivered
    /// interleaved in smaller chunks, so event time advances more evenly).
    /// The settings this source relies on (manual commits, the group) win.
    pub fn with_options(
        brokers: &str,
        group: &str,
        topic: &str,
        options: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut config = ClientConfig::new();
        for (key, value) in options {
            config.set(*key, *value);
        }
        let consumer: StreamConsumer<SourceContext> = config
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // librdkafka stops fetching a partition whose local queue is
            // full and, by default, waits a whole second before fetching
            // again: a pipeline that pauses to close a window then stalls
            // for ~0.6 s. Fetch again soon instead.
            .set("fetch.queue.backoff.ms", "20")
            .create_with_context(SourceContext::default())
            .map_err(|e| kafka_error("consumer", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka_error("subscribe", e))?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            linger: Duration::from_millis(5),
            health: Default::default(),
            topic_partitions: Vec::new(),
            ask_at: None,
            delivered: Vec::new(),
            read_committed_at: None,
        })
    }

    /// Reports receive errors it retries to `health`.
    pub fn with_health(mut self, health: crate::health::Health) -> Self {
        self.health = health;
        self
    }
}

impl KafkaSource {
    /// Reads back from the broker the offsets it holds as committed for
    /// the group (those of every partition of the topic), remembering them:
    /// an offset below one of them cannot be a redelivery, so it starts the
    /// log over. `None` if the broker did not answer.
    pub async fn read_committed(&mut self) -> Option<Vec<Position>> {
        self.read_committed_at = Some(std::time::Instant::now() + READ_COMMITTED_EVERY);
        let mut list = TopicPartitionList::new();
        for p in self.partitions()? {
            list.add_partition(&self.topic, p);
        }
        let consumer = self.consumer.clone();
        let list = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(list, Duration::from_secs(2))
        })
        .await
        .ok()?
        .ok()?;
        self.consumer.context().record(&list);
        Some(
            list.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(offset) => Some(Position {
                        partition: e.partition(),
                        offset,
                    }),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Asks the broker for the topic's partitions (kept on failure: the
    /// next batch asks again); whether it answered with them.
    async fn refresh_partitions(&mut self) -> bool {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let asked = tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .ok()?;
            let t = metadata.topics().iter().find(|t| t.name() == topic)?;
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            (!ids.is_empty()).then_some(ids)
        })
        .await
        .ok()
        .flatten();
        let now = std::time::Instant::now();
        let answered = asked.is_some();
        self.ask_at = Some(match asked {
            Some(ids) => {
                self.topic_partitions = ids;
                now + METADATA_EVERY
            }
            None => now + Duration::from_secs(5),
        });
        answered
    }
}

impl Source for KafkaSource {
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Option<Vec<Message>>, String>> {
        Box::pin(async move {
            if self.ask_at.is_none_or(|at| at <= std::time::Instant::now()) {
                self.refresh_partitions().await;
            }
            if self
                .read_committed_at
                .is_none_or(|at| at <= std::time::Instant::now())
            {
                self.read_committed().await;
            }
            let mut failing = false;
            let first = loop {
                let received = if failing {
                    // After an outage no message may come for a while: the
                    // source has recovered once the broker answers again
                    // with the topic (a restarted broker may not have it).
                    match tokio::time::timeout(RECOVERY_PROBE, self.consumer.recv()).await {
                        Ok(received) => received,
                        Err(_) => {
                            if self.refresh_partitions().await {
                                self.health.recovered(SOURCE_COMPONENT);
                                failing = false;
                            }
                            continue;
                        }
                    }
                } else {
                    self.consumer.recv().await
                };
                match received {
                    Ok(m) => break m,
                    // librdkafka paces these (its reconnect backoff) and
                    // queues those of an outage: receive again at once, or
                    // draining the queue would outlast the outage.
                    Err(e) if transient(&e) => {
                        failing = true;
                        self.health.failed(
                            SOURCE_COMPONENT,
                            &kafka_error("receive", e),
                            ERROR_PAUSE,
                        );
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                    Err(e) => return Err(kafka_error("receive", e)),
                }
            };
            self.health.recovered(SOURCE_COMPONENT);
            // Payloads go into one buffer, handed out as slices of it.
            let mut data = Vec::new();
            let mut read: Vec<(std::ops::Range<usize>, Position, bool)> = Vec::new();
            let context = self.consumer.context().clone();
            let delivered = &mut self.delivered;
            let mut take =
                |m: &rdkafka::message::BorrowedMessage<'_>,
                 data: &mut Vec<u8>,
                 read: &mut Vec<(std::ops::Range<usize>, Position, bool)>| {
                    let payload = m.payload().unwrap_or_default();
                    let at = Position {
                        partition: m.partition(),
                        offset: m.offset(),
                    };
                    let restarted = log_restarted(&context, delivered, at);
                    read.push((data.len()..data.len() + payload.len(), at, restarted));
                    data.extend_from_slice(payload);
                };
            take(&first, &mut data, &mut read);
            drop(first);
            let deadline = tokio::time::Instant::now() + self.linger;
            while read.len() < max {
                // What librdkafka already holds is taken without arming a
                // timer per message; only an empty queue waits (until the
                // linger deadline).
                let next = match self.consumer.recv().now_or_never() {
                    Some(next) => next,
                    None => match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                };
                match next {
                    Ok(m) => take(&m, &mut data, &mut read),
                    // Deliver what was read; the next batch meets the error.
                    Err(e) if transient(&e) => break,
                    Err(e) => return Err(kafka_error("receive", e)),
                }
            }
            let data = bytes::Bytes::from(data);
            let batch = read
                .into_iter()
                .map(|(range, position, log_restarted)| Message {
                    payload: data.slice(range),
                    position: Some(position),
                    log_restarted,
                })
                .collect();
            Ok(Some(batch))
        })
    }

    fn partitions(&self) -> Option<Vec<i32>> {
        if !self.topic_partitions.is_empty() {
            return Some(self.topic_partitions.clone());
        }
        // Until the metadata answers: the assigned ones.
        let assigned = self.consumer.assignment().ok()?;
        Some(
            assigned
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| e.partition())
                .collect(),
        )
    }

    fn committer(&self) -> Arc<dyn Committer> {
        Arc::new(KafkaCommitter {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        })
    }
}

/// Commits a [`KafkaSource`]'s offsets (the consumer is shared, so commits
/// go out while the reader task keeps fetching).
struct KafkaCommitter {
    consumer: Arc<StreamConsumer<SourceContext>>,
    topic: String,
}

impl KafkaCommitter {
    async fn commit_with(&self, next: &[Position], mode: CommitMode) -> Result<(), String> {
        if next.is_empty() {
            return Ok(()); // nothing new; Kafka refuses an empty commit
        }
        let mut list = TopicPartitionList::new();
        for p in next {
            list.add_partition_offset(&self.topic, p.partition, Offset::Offset(p.offset))
                .map_err(|e| kafka_error("commit", e))?;
        }
        match mode {
            // Enqueued in librdkafka, sent in the background.
            CommitMode::Async => self
                .consumer
                .commit(&list, CommitMode::Async)
                .map_err(|e| kafka_error("commit", e)),
            CommitMode::Sync => {
                let consumer = self.consumer.clone();
                let list = tokio::task::spawn_blocking(move || {
                    consumer.commit(&list, CommitMode::Sync).map(|()| list)
                })
                .await
                .map_err(|e| kafka_error("commit", e))?
                .map_err(|e| kafka_error("commit", e))?;
                self.consumer.context().record(&list);
                Ok(())
            }
        }
    }
}

impl Committer for KafkaCommitter {
    fn commit<'a>(&'a self, next: &'a [Position]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.commit_with(next, CommitMode::Async))
    }

    fn commit_durably<'a>(&'a self, next: &'a [Position]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.commit_with(next, CommitMode::Sync))
    }
}

/// Sends new or changed recommendations to `fleet.recommendations` (one JSON
/// document per move, key = fleet id) and dead letters to
/// `fleet.telemetry.dlq`.
pub struct KafkaSink {
    producer: FutureProducer,
    brokers: String,
    topics: Topics,
}

impl KafkaSink {
    pub fn new(brokers: &str, topics: Topics) -> Result<Self, String> {
        Ok(KafkaSink {
            producer: sink_producer(brokers)?,
            brokers: brokers.to_owned(),
            topics,
        })
    }

    /// Sends, and after a failure starts the next attempt with a new
    /// producer: an idempotent producer whose broker lost its state (a
    /// broker restarted empty) keeps timing out, a new one does not.
    async fn send(&mut self, topic: &str, messages: &[(String, Vec<u8>)]) -> Result<(), String> {
        let sent = send_all(&self.producer, topic, messages).await;
        if sent.is_err() {
            if let Ok(fresh) = sink_producer(&self.brokers) {
                self.producer = fresh;
            }
        }
        sent
    }
}

/// The recommendation documents a window sends, in move order.
pub fn recommendation_messages(out: &WindowOutput) -> Vec<serde_json::Value> {
    out.plan
        .changed
        .iter()
        .map(|m| {
            serde_json::json!({
                "fleet_id": out.fleet_id,
                "window_start": fleet_engine::time::format_rfc3339(out.window.start_ms),
                "window_end": fleet_engine::time::format_rfc3339(out.window.end_ms),
                "from_zone": m.from_zone,
                "to_zone": m.to_zone,
                "vehicles": m.vehicles,
                "km": m.km,
                "cost": m.cost,
                "benefit_per_vehicle": m.benefit_per_vehicle,
                "explanation": m.explanation,
            })
        })
        .collect()
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write_window<'a>(&'a mut self, out: &'a WindowOutput) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let messages: Vec<(String, Vec<u8>)> = recommendation_messages(out)
                .into_iter()
                .map(|doc| (out.fleet_id.clone(), doc.to_string().into_bytes()))
                .collect();
            let topic = self.topics.recommendations.clone();
            self.send(&topic, &messages).await
        })
    }

    fn write_dead_letters<'a>(
        &'a mut self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let messages: Vec<(String, Vec<u8>)> = letters
                .iter()
                .map(|l| {
                    let doc = serde_json::json!({
                        "reason": l.reason,
                        "payload": String::from_utf8_lossy(&l.payload[..l.payload.len().min(4096)]),
                        "partition": l.position.map(|p| p.partition),
                        "offset": l.position.map(|p| p.offset),
                    });
                    let key = l
                        .position
                        .map_or_else(String::new, |p| format!("{}:{}", p.partition, p.offset));
                    (key, doc.to_string().into_bytes())
                })
                .collect();
            let topic = self.topics.dlq.clone();
            self.send(&topic, &messages).await
        })
    }
}

/// Whether the brokers answer a metadata request within `timeout`.
pub async fn reachable(brokers: &str, timeout: Duration) -> bool {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<rdkafka::consumer::BaseConsumer>()
    else {
        return false;
    };
    tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, timeout).is_ok())
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Position {
        Position {
            partition: 3,
            offset,
        }
    }

    fn ack(context: &SourceContext, offset: i64) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("t", 3, Offset::Offset(offset))
            .unwrap();
        context.record(&list);
    }

    #[test]
    fn a_redelivery_from_the_committed_offset_is_not_a_log_restart() {
        let context = SourceContext::default();
        let mut delivered = Vec::new();
        for o in 0..=100 {
            assert!(!log_restarted(&context, &mut delivered, at(o)));
        }
        ack(&context, 50);
        // A rebalance resumes from the commit: offsets 50.. again.
        for o in 50..=100 {
            assert!(!log_restarted(&context, &mut delivered, at(o)));
        }
        // Nothing committed (yet) is no evidence either way.
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("t", 3, Offset::Invalid).unwrap();
        context.record(&list);
        assert!(!log_restarted(&context, &mut delivered, at(60)));
    }

    #[test]
    fn offsets_below_the_acknowledged_commit_start_the_log_over_once() {
        let context = SourceContext::default();
        let mut delivered = Vec::new();
        for o in 0..=100 {
            log_restarted(&context, &mut delivered, at(o));
        }
        ack(&context, 80);
        assert!(log_restarted(&context, &mut delivered, at(0)));
        assert!(!log_restarted(&context, &mut delivered, at(1)));
        // A late acknowledgement of the old log's commit (above anything
        // the new log delivered) does not restart it again.
        ack(&context, 80);
        assert!(!log_restarted(&context, &mut delivered, at(1)));
        assert!(!log_restarted(&context, &mut delivered, at(2)));
        // Other partitions are on their own.
        assert!(!log_restarted(
            &context,
            &mut delivered,
            Position {
                partition: 0,
                offset: 0
            }
        ));
    }
}

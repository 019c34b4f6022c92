//! Result streams and cancellation.
//!
//! [`ResultReader`] hands batches to the caller as they arrive: a task on
//! the driver's runtime reads the DoGet stream, record batches are decoded
//! a few at a time on the runtime's threads ([`DECODE_AHEAD`]), and a second
//! task hands them on in order through a bounded channel (`prefetch`
//! batches), so a slow reader holds back the server instead of filling
//! memory. [`CancelSlot`] lets another thread stop what a
//! connection is running: the local wait ends at once and the server gets
//! `CancelFlightInfo`.

use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_flight::{CancelFlightInfoRequest, FlightData, FlightInfo, Ticket};
use arrow_schema::{ArrowError, SchemaRef};
use parking_lot::Mutex;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::client::{block_on, Compression, Rpc, RUNTIME};
use crate::error::{Error, Result};
use crate::ipc::{Decoded, Decoder};

struct Running {
    token: CancellationToken,
    info: Option<FlightInfo>,
    rpc: Rpc,
}

/// What a connection is running now, for [`adbc_core::CancelHandle`].
#[derive(Default)]
pub struct CancelSlot {
    running: Mutex<Option<Running>>,
}

impl CancelSlot {
    /// Marks the start of an operation; its token ends local waits on cancel.
    pub fn start(&self, rpc: &Rpc) -> CancellationToken {
        let token = CancellationToken::new();
        *self.running.lock() = Some(Running { token: token.clone(), info: None, rpc: rpc.clone() });
        token
    }

    /// Records the FlightInfo of the running statement (what CancelFlightInfo names).
    pub fn set_info(&self, info: &FlightInfo) {
        if let Some(r) = self.running.lock().as_mut() {
            r.info = Some(info.clone());
        }
    }

    /// Marks a non-streaming operation as finished.
    pub fn finish(&self) {
        self.running.lock().take();
    }

    pub fn cancel(&self) -> Result<()> {
        let running = self.running.lock().take();
        let Some(r) = running else { return Ok(()) };
        r.token.cancel();
        // An empty FlightInfo still makes Pond interrupt the session's statement.
        let req = CancelFlightInfoRequest { info: Some(r.info.unwrap_or_default()) };
        let rpc = r.rpc;
        let call = async move { rpc.action("CancelFlightInfo", req.encode_to_vec()).await };
        match tokio::runtime::Handle::try_current() {
            Ok(_) => {
                RUNTIME.spawn(call);
                Ok(())
            }
            Err(_) => block_on(call).map(|_| ()),
        }
    }
}

/// Waits for `fut` unless the operation is cancelled first.
pub async fn cancellable<T>(token: &CancellationToken, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = token.cancelled() => Err(Error::Cancelled),
    }
}

/// One DoGet stream and the decoder of its messages.
struct Source {
    stream: tonic::Streaming<FlightData>,
    decoder: Decoder,
}

impl Source {
    fn new(stream: tonic::Streaming<FlightData>) -> Self {
        Self { stream, decoder: Decoder::default() }
    }

    async fn next(&mut self) -> Option<Result<Decoded>> {
        match self.stream.message().await {
            Ok(Some(data)) => Some(self.decoder.decode(data).map_err(Error::from)),
            Ok(None) => None,
            Err(status) => Some(Err(Error::from(status))),
        }
    }
}

/// A streaming result. Dropping it stops the transfer (the server sees the
/// stream reset and stops the statement).
pub struct ResultReader {
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
    done: bool,
}

/// Record batches decoded at once, off the task that receives them (on a
/// loaded machine a single decoding thread was the slowest stage of an LZ4
/// fetch). Batches still reach the caller in order. They run as tasks on the
/// driver's two runtime threads: blocking-pool threads, each with its own
/// malloc arena, raised the client's RSS while streaming.
const DECODE_AHEAD: usize = 2;

/// A batch on its way to the caller: being decoded, or an error.
type Step = Result<tokio::task::JoinHandle<std::result::Result<RecordBatch, ArrowError>>>;

impl ResultReader {
    /// DoGets every endpoint of `info` in order. Returns once the schema is
    /// known (the first message of the first stream).
    pub fn open(rpc: Rpc, info: FlightInfo, compression: Compression, prefetch: usize, token: CancellationToken) -> Result<Self> {
        let tickets: Vec<Ticket> = info.endpoint.iter().filter_map(|e| e.ticket.clone()).collect();
        let info_schema = info.clone().try_decode_schema().ok().map(Arc::new);
        Self::from_tickets(rpc, tickets, info_schema, compression, prefetch, token)
    }

    pub fn from_tickets(
        rpc: Rpc,
        tickets: Vec<Ticket>,
        info_schema: Option<SchemaRef>,
        compression: Compression,
        prefetch: usize,
        token: CancellationToken,
    ) -> Result<Self> {
        let mut tickets = tickets.into_iter();
        let first = match tickets.next() {
            Some(t) => t,
            None => {
                let schema = info_schema.ok_or_else(|| Error::Internal("the server's answer has neither a schema nor a ticket".into()))?;
                let (_tx, rx) = tokio::sync::mpsc::channel(1);
                return Ok(Self { schema, rx, tasks: [RUNTIME.spawn(async {}), RUNTIME.spawn(async {})], done: true });
            }
        };
        // Open the first stream and read up to its schema on the caller's thread.
        let (schema, decoder, pending) = block_on(cancellable(&token, async {
            let stream = rpc.do_get(first, compression).await?;
            let mut decoder = Source::new(stream);
            let mut pending = None;
            let schema = loop {
                match decoder.next().await {
                    Some(Ok(d)) => match d {
                        Decoded::Schema(s) => break s,
                        Decoded::Batch(job) => {
                            let b = job.run()?;
                            let schema = b.schema();
                            pending = Some(b);
                            break schema;
                        }
                        Decoded::Other => continue,
                    },
                    Some(Err(e)) => return Err(e),
                    None => match &info_schema {
                        Some(s) => break s.clone(),
                        None => return Err(Error::Internal("the result stream ended before its schema".into())),
                    },
                }
            };
            Ok((schema, decoder, pending))
        }))?;
        let (tx, rx) = tokio::sync::mpsc::channel(prefetch.max(1));
        let (steps, mut steps_rx) = tokio::sync::mpsc::channel::<Step>(DECODE_AHEAD);
        // Hands decoded batches on in order; waits while the caller is
        // `prefetch` batches behind, which in turn holds back the receiver.
        let forward = RUNTIME.spawn(async move {
            if let Some(b) = pending {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
            while let Some(step) = steps_rx.recv().await {
                let item = match step {
                    Ok(job) => match job.await {
                        Ok(r) => r.map_err(Error::from),
                        Err(e) => Err(Error::Internal(format!("decoding a record batch failed: {e}"))),
                    },
                    Err(e) => Err(e),
                };
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        let rest: Vec<Ticket> = tickets.collect();
        let receive = RUNTIME.spawn(async move {
            let mut decoder = decoder;
            let mut rest = rest.into_iter();
            loop {
                let item = tokio::select! {
                    item = decoder.next() => item,
                    _ = token.cancelled() => {
                        let _ = steps.send(Err(Error::Cancelled)).await;
                        return;
                    }
                };
                match item {
                    Some(Ok(d)) => {
                        if let Decoded::Batch(job) = d {
                            let job = tokio::spawn(async move { job.run() });
                            tokio::select! {
                                r = steps.send(Ok(job)) => if r.is_err() { return },
                                _ = token.cancelled() => {
                                    let _ = steps.send(Err(Error::Cancelled)).await;
                                    return;
                                }
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let e = if token.is_cancelled() { Error::Cancelled } else { e };
                        let _ = steps.send(Err(e)).await;
                        return;
                    }
                    None => match rest.next() {
                        Some(t) => match cancellable(&token, rpc.do_get(t, compression)).await {
                            Ok(s) => decoder = Source::new(s),
                            Err(e) => {
                                let _ = steps.send(Err(e)).await;
                                return;
                            }
                        },
                        None => return,
                    },
                }
            }
        });
        Ok(Self { schema, rx, tasks: [receive, forward], done: false })
    }
}

impl Iterator for ResultReader {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // A plain executor: works on any thread, inside async code too
        // (tokio's `blocking_recv` would panic there, across the C boundary).
        let item = futures::executor::block_on(self.rx.recv());
        match item {
            Some(Ok(b)) => Some(Ok(b)),
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e.into()))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

impl RecordBatchReader for ResultReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Drop for ResultReader {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A reader over batches already in memory (metadata answers).
pub fn batches_reader(schema: SchemaRef, batches: Vec<RecordBatch>) -> Box<dyn RecordBatchReader + Send + 'static> {
    Box::new(arrow_array::RecordBatchIterator::new(batches.into_iter().map(Ok), schema))
}

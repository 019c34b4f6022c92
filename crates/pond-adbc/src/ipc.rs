//! Flight data messages → record batches, with a fast path for LZ4 bodies.
//!
//! [`Decoder`] takes the place of arrow-flight's `FlightDataDecoder` for
//! result streams. Two costs of that path showed in profiles of a 6M-row
//! fetch with `pond.compression=lz4`:
//! - `FlightDataDecoder` copies every message body into a new buffer;
//! - arrow-ipc decompresses each column buffer through lz4_flex's streaming
//!   `FrameDecoder`, which allocates and zero-fills a scratch buffer of the
//!   frame's maximum block size (4 MiB for any column buffer over 256 KiB)
//!   per buffer, then copies the output once more.
//!
//! Here LZ4 bodies are read in place, and the blocks of every LZ4 frame are
//! decompressed straight into one 64-byte aligned body sized from the
//! buffers' length prefixes; arrow-ipc then reads an uncompressed message
//! over it (zero-copy). zstd bodies, dictionaries and LZ4 frames that carry
//! checksums or dictionary ids go through arrow-ipc as before. Record
//! batches are decoded as [`BatchJob`]s, so the stream reader (`stream.rs`)
//! decodes a few at once off the thread that receives them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_flight::FlightData;
use arrow_ipc::reader::{read_dictionary, read_record_batch};
use arrow_ipc::{CompressionType, MessageHeader};
use arrow_schema::{ArrowError, Schema, SchemaRef};

/// What one Flight data message carried.
pub enum Decoded {
    Schema(SchemaRef),
    /// A record batch, to be decoded by [`BatchJob::run`] on any thread.
    Batch(BatchJob),
    /// A dictionary (kept for later batches) or an empty message.
    Other,
}

/// Decodes the messages of one result stream, in order. Record batches come
/// out as [`BatchJob`]s so that several can be decoded at once.
#[derive(Default)]
pub struct Decoder {
    schema: Option<SchemaRef>,
    dictionaries: Arc<HashMap<i64, ArrayRef>>,
}

/// One record batch message with what decoding it needs.
pub struct BatchJob {
    data: FlightData,
    schema: SchemaRef,
    dictionaries: Arc<HashMap<i64, ArrayRef>>,
}

fn protocol(msg: impl Into<String>) -> ArrowError {
    ArrowError::IpcError(msg.into())
}

impl Decoder {
    pub fn decode(&mut self, data: FlightData) -> Result<Decoded, ArrowError> {
        let message = arrow_ipc::root_as_message(&data.data_header).map_err(|e| protocol(format!("invalid Flight data header: {e}")))?;
        match message.header_type() {
            MessageHeader::NONE => Ok(Decoded::Other),
            MessageHeader::Schema => {
                let schema = Arc::new(Schema::try_from(&data)?);
                self.schema = Some(schema.clone());
                self.dictionaries = Arc::default();
                Ok(Decoded::Schema(schema))
            }
            MessageHeader::DictionaryBatch => {
                let schema = self.schema.as_ref().ok_or_else(|| protocol("a dictionary arrived before the schema"))?;
                let batch = message.header_as_dictionary_batch().ok_or_else(|| protocol("invalid dictionary batch header"))?;
                let body = Buffer::from(data.data_body.as_ref());
                read_dictionary(&body, batch, schema, Arc::make_mut(&mut self.dictionaries), &message.version())?;
                Ok(Decoded::Other)
            }
            MessageHeader::RecordBatch => {
                let schema = self.schema.clone().ok_or_else(|| protocol("a record batch arrived before the schema"))?;
                Ok(Decoded::Batch(BatchJob { data, schema, dictionaries: self.dictionaries.clone() }))
            }
            other => Err(protocol(format!("unexpected Flight data message {}", other.variant_name().unwrap_or("UNKNOWN")))),
        }
    }
}

impl BatchJob {
    pub fn run(self) -> Result<RecordBatch, ArrowError> {
        let message =
            arrow_ipc::root_as_message(&self.data.data_header).map_err(|e| protocol(format!("invalid Flight data header: {e}")))?;
        let batch = message.header_as_record_batch().ok_or_else(|| protocol("invalid record batch header"))?;
        let version = message.version();
        if batch.compression().map(|c| c.codec()) == Some(CompressionType::LZ4_FRAME) {
            if let Some((header, body)) = decompress_lz4(batch, &self.data.data_body)? {
                let message = arrow_ipc::root_as_message(&header).map_err(|e| protocol(e.to_string()))?;
                let batch = message.header_as_record_batch().ok_or_else(|| protocol("invalid record batch header"))?;
                return read_record_batch(&body, batch, self.schema, &self.dictionaries, None, &version);
            }
        }
        // One aligned copy of the body, as arrow-flight makes: reading the
        // received bytes in place would keep tonic's receive buffers alive
        // and realign most column buffers one by one anyway.
        let body = Buffer::from(self.data.data_body.as_ref());
        read_record_batch(&body, batch, self.schema, &self.dictionaries, None, &version)
    }
}

const LZ4_MAGIC: u32 = 0x184D_2204;
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION: u8 = 0b0100_0000;
const FLG_INDEPENDENT_BLOCKS: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_DICT_ID: u8 = 0b0000_0001;
const BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;
/// How far back an LZ4 match may reach (linked blocks).
const LZ4_WINDOW: usize = 64 * 1024;

/// Where one column buffer's bytes come from and go.
struct Part {
    src: std::ops::Range<usize>,
    out: usize,
    len: usize,
    compressed: bool,
}

fn pad64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Decompresses an LZ4_FRAME record batch body (each buffer: i64 uncompressed
/// length, -1 for "stored as is", then one or more LZ4 frames) into one
/// aligned buffer, and returns an uncompressed message header describing it.
/// `None`: a frame uses something this path leaves to arrow-ipc.
fn decompress_lz4(batch: arrow_ipc::RecordBatch<'_>, body: &[u8]) -> Result<Option<(Vec<u8>, Buffer)>, ArrowError> {
    let corrupt = |what: &str| protocol(format!("corrupt LZ4 record batch body: {what}"));
    let Some(buffers) = batch.buffers() else { return Ok(None) };
    let mut parts = Vec::with_capacity(buffers.len());
    let mut total = 0usize;
    for b in buffers.iter() {
        let (Ok(offset), Ok(length)) = (usize::try_from(b.offset()), usize::try_from(b.length())) else {
            return Err(corrupt("negative buffer offset or length"));
        };
        let end = offset.checked_add(length).filter(|&e| e <= body.len()).ok_or_else(|| corrupt("buffer past the end of the body"))?;
        let part = if length == 0 {
            Part { src: offset..offset, out: total, len: 0, compressed: false }
        } else {
            let prefix: [u8; 8] = body.get(offset..offset + 8).and_then(|p| p.try_into().ok()).ok_or_else(|| corrupt("short buffer"))?;
            match i64::from_le_bytes(prefix) {
                -1 => Part { src: offset + 8..end, out: total, len: length - 8, compressed: false },
                n => {
                    let len = usize::try_from(n).map_err(|_| corrupt("negative uncompressed length"))?;
                    Part { src: offset + 8..end, out: total, len, compressed: true }
                }
            }
        };
        total = total.checked_add(pad64(part.len)).ok_or_else(|| corrupt("body too large"))?;
        parts.push(part);
    }
    let mut out = MutableBuffer::from_len_zeroed(total);
    for p in &parts {
        let dst = &mut out.as_slice_mut()[p.out..p.out + p.len];
        let src = &body[p.src.clone()];
        if !p.compressed {
            dst.copy_from_slice(src);
        } else if !lz4_frames_into(src, dst)? {
            return Ok(None);
        }
    }

    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(256 + 16 * parts.len());
    let nodes: Vec<arrow_ipc::FieldNode> = batch.nodes().map(|n| n.iter().copied().collect()).unwrap_or_default();
    let nodes = fbb.create_vector(&nodes);
    let buffers: Vec<arrow_ipc::Buffer> = parts.iter().map(|p| arrow_ipc::Buffer::new(p.out as i64, p.len as i64)).collect();
    let buffers = fbb.create_vector(&buffers);
    let variadic = batch.variadicBufferCounts().map(|v| {
        let v: Vec<i64> = v.iter().collect();
        fbb.create_vector(&v)
    });
    let header = arrow_ipc::RecordBatch::create(
        &mut fbb,
        &arrow_ipc::RecordBatchArgs {
            length: batch.length(),
            nodes: Some(nodes),
            buffers: Some(buffers),
            compression: None,
            variadicBufferCounts: variadic,
        },
    );
    let message = arrow_ipc::Message::create(
        &mut fbb,
        &arrow_ipc::MessageArgs {
            version: arrow_ipc::MetadataVersion::V5,
            header_type: MessageHeader::RecordBatch,
            header: Some(header.as_union_value()),
            bodyLength: total as i64,
            custom_metadata: None,
        },
    );
    fbb.finish(message, None);
    Ok(Some((fbb.finished_data().to_vec(), out.into())))
}

fn read_u32(input: &[u8], at: usize) -> Option<u32> {
    input.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
}

/// Decodes the LZ4 frames in `input` into exactly `out`. `Ok(false)`: a
/// frame is of a kind this decoder leaves to lz4_flex's own (block or
/// content checksums, dictionary ids, skippable or legacy frames).
fn lz4_frames_into(mut input: &[u8], out: &mut [u8]) -> Result<bool, ArrowError> {
    let corrupt = |what: &str| protocol(format!("corrupt LZ4 frame: {what}"));
    let mut pos = 0;
    while !input.is_empty() {
        if read_u32(input, 0) != Some(LZ4_MAGIC) {
            return Ok(false);
        }
        let flg = *input.get(4).ok_or_else(|| corrupt("short header"))?;
        if flg & FLG_VERSION_MASK != FLG_VERSION || flg & (FLG_BLOCK_CHECKSUM | FLG_CONTENT_CHECKSUM | FLG_DICT_ID) != 0 {
            return Ok(false);
        }
        let linked = flg & FLG_INDEPENDENT_BLOCKS == 0;
        // magic, FLG, BD, [content size], header checksum
        let mut at = 4 + 2 + if flg & FLG_CONTENT_SIZE != 0 { 8 } else { 0 } + 1;
        let frame_start = pos;
        loop {
            let word = read_u32(input, at).ok_or_else(|| corrupt("missing end mark"))?;
            at += 4;
            if word == 0 {
                break;
            }
            let size = (word & !BLOCK_UNCOMPRESSED) as usize;
            let block = input.get(at..at + size).ok_or_else(|| corrupt("block past the end of the buffer"))?;
            at += size;
            let n = if word & BLOCK_UNCOMPRESSED != 0 {
                out.get_mut(pos..pos + size).ok_or_else(|| corrupt("more data than the length prefix says"))?.copy_from_slice(block);
                size
            } else if linked && pos > frame_start {
                let (before, rest) = out.split_at_mut(pos);
                let dict = &before[frame_start.max(pos.saturating_sub(LZ4_WINDOW))..];
                lz4_flex::block::decompress_into_with_dict(block, rest, dict).map_err(|e| corrupt(&e.to_string()))?
            } else {
                lz4_flex::block::decompress_into(block, &mut out[pos..]).map_err(|e| corrupt(&e.to_string()))?
            };
            pos += n;
        }
        input = &input[at..];
    }
    if pos != out.len() {
        return Err(corrupt(&format!("{pos} bytes where the length prefix says {}", out.len())));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Decimal128Array, Int64Array, StringArray, StringViewArray};
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_ipc::writer::IpcWriteOptions;
    use futures::TryStreamExt;

    fn batch(rows: usize) -> RecordBatch {
        let ints = Int64Array::from_iter((0..rows as i64).map(|i| (i % 7 != 0).then_some(i * 3)));
        let text = StringArray::from_iter_values((0..rows).map(|i| format!("row {i} of some repetitive text")));
        let view = StringViewArray::from_iter_values((0..rows).map(|i| format!("a longer string view value number {}", i % 100)));
        let dec = Decimal128Array::from_iter_values((0..rows as i128).map(|i| i * 101)).with_precision_and_scale(15, 2).unwrap();
        RecordBatch::try_from_iter([
            ("i", Arc::new(ints) as ArrayRef),
            ("s", Arc::new(text) as ArrayRef),
            ("v", Arc::new(view) as ArrayRef),
            ("d", Arc::new(dec) as ArrayRef),
        ])
        .unwrap()
    }

    fn round_trip(codec: Option<CompressionType>, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let options = IpcWriteOptions::default().try_with_compression(codec).unwrap();
        let stream = FlightDataEncoderBuilder::new().with_options(options).build(futures::stream::iter(batches.into_iter().map(Ok)));
        let messages: Vec<FlightData> = futures::executor::block_on(stream.try_collect()).unwrap();
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for m in messages {
            if let Decoded::Batch(job) = decoder.decode(m).unwrap() {
                out.push(job.run().unwrap());
            }
        }
        out
    }

    #[test]
    fn lz4_bodies_decode_to_the_batches_sent() {
        // Small and large buffers: the encoder picks 64 KiB, 256 KiB and 4 MiB frames.
        let sent = vec![batch(10), batch(5_000), batch(200_000), batch(0)];
        let want = arrow_select::concat::concat_batches(&sent[0].schema(), &sent).unwrap();
        for codec in [None, Some(CompressionType::LZ4_FRAME), Some(CompressionType::ZSTD)] {
            // The encoder splits large batches into messages of about 2 MiB.
            let got = round_trip(codec, sent.clone());
            assert!(got.len() > 3, "{codec:?}");
            let got = arrow_select::concat::concat_batches(&want.schema(), &got).unwrap();
            assert_eq!(got, want, "{codec:?}");
            for c in got.columns() {
                c.to_data().validate_full().unwrap();
            }
        }
    }

    #[test]
    fn lz4_frames_decode_linked_and_stored_blocks() {
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 1000).to_le_bytes()).collect();
        for mode in [lz4_flex::frame::BlockMode::Linked, lz4_flex::frame::BlockMode::Independent] {
            let info = lz4_flex::frame::FrameInfo::new().block_mode(mode).block_size(lz4_flex::frame::BlockSize::Max64KB);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            std::io::Write::write_all(&mut enc, &data).unwrap();
            let framed = enc.finish().unwrap();
            let mut out = vec![0u8; data.len()];
            assert!(lz4_frames_into(&framed, &mut out).unwrap());
            assert_eq!(out, data);
        }
        // Incompressible bytes are stored as uncompressed blocks.
        let noise: Vec<u8> = (0..70_000u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut enc, &noise).unwrap();
        let framed = enc.finish().unwrap();
        let mut out = vec![0u8; noise.len()];
        assert!(lz4_frames_into(&framed, &mut out).unwrap());
        assert_eq!(out, noise);
        // A wrong length prefix is an error, not a short or overlong buffer.
        let mut short = vec![0u8; noise.len() - 1];
        assert!(lz4_frames_into(&framed, &mut short).is_err());
        // Checksummed frames are left to lz4_flex's decoder.
        let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        std::io::Write::write_all(&mut enc, &noise).unwrap();
        assert!(!lz4_frames_into(&enc.finish().unwrap(), &mut out).unwrap());
    }
}

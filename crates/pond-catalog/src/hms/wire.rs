//! The byte level under [`super::HmsClient`]: the TCP socket with its timeouts,
//! the buffered or framed transport, and limits on sizes read from the wire.
//!
//! The `thrift` 0.17 runtime trusts the sizes it reads: a frame length or a list
//! length is allocated before a byte of it arrives, so a port that is not a
//! metastore (or a framed client talking to a buffered metastore, whose answer
//! starts 0x8001…) could make it reserve gigabytes or panic. Frames here grow
//! only with the bytes received, and container sizes are checked before the
//! generated code reserves space for them.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use thrift::protocol::{
    TBinaryInputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier, TSetIdentifier,
    TStructIdentifier,
};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TFramedWriteTransport};
use thrift::{ProtocolError, ProtocolErrorKind};

use super::Transport;

/// Socket buffer of the buffered and framed transports.
const BUFFER: usize = 64 * 1024;

/// Largest frame accepted from a framed metastore (a `get_partitions` answer
/// over 100,000 partitions is tens of MB).
pub(super) const MAX_FRAME: usize = 1 << 30;

/// Largest list, set or map accepted (Hive's own partition calls cap at i16 or
/// answer everything; no metastore table has millions of partitions and lives).
pub(super) const MAX_ELEMENTS: i32 = 8 << 20;

/// The last I/O error the socket saw: Thrift's error keeps only its text, and a
/// read timeout (EAGAIN) would otherwise look like any other failure.
pub(super) type LastIo = Arc<Mutex<Option<io::ErrorKind>>>;

/// The socket, recording the kind of its I/O errors.
struct Watched {
    stream: TcpStream,
    last: LastIo,
}

impl Watched {
    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            *self.last.lock() = Some(e.kind());
        }
        r
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.stream.read(buf);
        self.note(r)
    }
}

impl Write for Watched {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.stream.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.stream.flush();
        self.note(r)
    }
}

/// Framed transport, reading side: a big-endian i32 length, then the frame.
pub(super) struct FramedReader<R> {
    inner: R,
    frame: Vec<u8>,
    pos: usize,
}

impl<R: Read> FramedReader<R> {
    pub(super) fn new(inner: R) -> Self {
        FramedReader { inner, frame: Vec::new(), pos: 0 }
    }

    /// Reads the next frame; false at a clean end of stream (between frames).
    fn next_frame(&mut self) -> io::Result<bool> {
        let mut len = [0u8; 4];
        let first = loop {
            match self.inner.read(&mut len) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if first == 0 {
            return Ok(false);
        }
        self.inner.read_exact(&mut len[first..])?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len).ok().filter(|&n| n <= MAX_FRAME).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("frame size {len} out of range (is the metastore's transport framed?)"))
        })?;
        self.frame.clear();
        self.pos = 0;
        // Grows with what arrives, not with what the length claims.
        let got = (&mut self.inner).take(len as u64).read_to_end(&mut self.frame)?;
        if got < len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the metastore closed the connection mid-frame"));
        }
        Ok(true)
    }
}

impl<R: Read> Read for FramedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.frame.len() {
            if !self.next_frame()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.frame.len() - self.pos);
        buf[..n].copy_from_slice(&self.frame[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A binary-protocol reader that refuses negative or huge container sizes
/// before the generated code reserves memory for them.
pub(super) struct Bounded<P>(pub(super) P);

fn check_size(what: &str, size: i32) -> thrift::Result<()> {
    if (0..=MAX_ELEMENTS).contains(&size) {
        return Ok(());
    }
    Err(thrift::Error::Protocol(ProtocolError::new(
        if size < 0 { ProtocolErrorKind::NegativeSize } else { ProtocolErrorKind::SizeLimit },
        format!("{what} of {size} elements (limit {MAX_ELEMENTS})"),
    )))
}

impl<P: TInputProtocol> TInputProtocol for Bounded<P> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        self.0.read_message_begin()
    }
    fn read_message_end(&mut self) -> thrift::Result<()> {
        self.0.read_message_end()
    }
    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        self.0.read_struct_begin()
    }
    fn read_struct_end(&mut self) -> thrift::Result<()> {
        self.0.read_struct_end()
    }
    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        self.0.read_field_begin()
    }
    fn read_field_end(&mut self) -> thrift::Result<()> {
        self.0.read_field_end()
    }
    fn read_bool(&mut self) -> thrift::Result<bool> {
        self.0.read_bool()
    }
    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        self.0.read_bytes()
    }
    fn read_i8(&mut self) -> thrift::Result<i8> {
        self.0.read_i8()
    }
    fn read_i16(&mut self) -> thrift::Result<i16> {
        self.0.read_i16()
    }
    fn read_i32(&mut self) -> thrift::Result<i32> {
        self.0.read_i32()
    }
    fn read_i64(&mut self) -> thrift::Result<i64> {
        self.0.read_i64()
    }
    fn read_double(&mut self) -> thrift::Result<f64> {
        self.0.read_double()
    }
    fn read_string(&mut self) -> thrift::Result<String> {
        self.0.read_string()
    }
    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let id = self.0.read_list_begin()?;
        check_size("a list", id.size)?;
        Ok(id)
    }
    fn read_list_end(&mut self) -> thrift::Result<()> {
        self.0.read_list_end()
    }
    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let id = self.0.read_set_begin()?;
        check_size("a set", id.size)?;
        Ok(id)
    }
    fn read_set_end(&mut self) -> thrift::Result<()> {
        self.0.read_set_end()
    }
    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let id = self.0.read_map_begin()?;
        check_size("a map", id.size)?;
        Ok(id)
    }
    fn read_map_end(&mut self) -> thrift::Result<()> {
        self.0.read_map_end()
    }
    fn read_byte(&mut self) -> thrift::Result<u8> {
        self.0.read_byte()
    }
}

pub(super) type Input = Bounded<TBinaryInputProtocol<Box<dyn Read + Send>>>;
pub(super) type Output = Box<dyn Write + Send>;

fn optional(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// Opens a TCP connection to `authority` (`host:port`; every address it
/// resolves to is tried) and returns its reading and writing transports.
pub(super) fn open(
    authority: &str,
    transport: Transport,
    connect_timeout: Duration,
    rpc_timeout: Duration,
) -> io::Result<(Input, Output, LastIo)> {
    let mut last_err = None;
    let mut stream = None;
    for addr in authority.to_socket_addrs()? {
        let attempt = match optional(connect_timeout) {
            Some(t) => TcpStream::connect_timeout(&addr, t),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e),
        (None, None) => return Err(io::Error::new(io::ErrorKind::NotFound, "the host name resolved to no address")),
    };
    stream.set_nodelay(true)?;
    stream.set_read_timeout(optional(rpc_timeout))?;
    stream.set_write_timeout(optional(rpc_timeout))?;
    let last = LastIo::default();
    let reader = Watched { stream: stream.try_clone()?, last: last.clone() };
    let writer = Watched { stream, last: last.clone() };
    let (input, output): (Box<dyn Read + Send>, Output) = match transport {
        Transport::Buffered => (
            Box::new(TBufferedReadTransport::with_capacity(BUFFER, reader)),
            Box::new(TBufferedWriteTransport::with_capacity(BUFFER, writer)),
        ),
        Transport::Framed => (Box::new(FramedReader::new(reader)), Box::new(TFramedWriteTransport::with_capacity(BUFFER, writer))),
    };
    Ok((Bounded(TBinaryInputProtocol::new(input, true)), output, last))
}

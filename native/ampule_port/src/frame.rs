//! `{packet, 4}` framing: a 4-byte big-endian length, then that many bytes. Meaning lives in
//! `protocol`; this module only knows where frames start and end.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request the port reads into memory; larger frames are skipped and reported.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// What one read from the protocol pipe produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Frame(Vec<u8>),
    /// A frame over [`MAX_FRAME`], already skipped; carries its announced size.
    TooLarge(usize),
    /// End of input: the BEAM closed the port or is gone.
    Eof,
}

/// Reads the next frame. EOF between frames is [`Incoming::Eof`]; EOF inside one is too
/// (a BEAM that dies mid-write is still gone).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Incoming> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Incoming::Eof),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        let mut rest = r.take(len as u64);
        let skipped = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await?;
        if (skipped as usize) < len {
            return Ok(Incoming::Eof);
        }
        return Ok(Incoming::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    match r.read_exact(&mut buf).await {
        Ok(_) => Ok(Incoming::Frame(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Incoming::Eof),
        Err(e) => Err(e),
    }
}

/// Writes one frame (header and body in one write, so frames never interleave).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_in_order_then_eof() {
        let data: Vec<u8> = [&[0, 0, 0, 2, 1, 2][..], &[0, 0, 0, 0]].concat();
        let mut r = &data[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Incoming::Frame(vec![1, 2])
        );
        assert_eq!(read_frame(&mut r).await.unwrap(), Incoming::Frame(vec![]));
        assert_eq!(read_frame(&mut r).await.unwrap(), Incoming::Eof);
    }

    #[tokio::test]
    async fn oversized_frame_is_skipped_and_the_next_one_read() {
        let big = MAX_FRAME + 1;
        let mut data = (big as u32).to_be_bytes().to_vec();
        data.resize(4 + big, 7);
        data.extend_from_slice(&[0, 0, 0, 1, 9]);
        let mut r = &data[..];
        assert_eq!(read_frame(&mut r).await.unwrap(), Incoming::TooLarge(big));
        assert_eq!(read_frame(&mut r).await.unwrap(), Incoming::Frame(vec![9]));
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_eof() {
        let data = [0, 0, 0, 5, 1];
        let mut r = &data[..];
        assert_eq!(read_frame(&mut r).await.unwrap(), Incoming::Eof);
    }

    #[tokio::test]
    async fn write_then_read_round_trips() {
        let mut out = Vec::new();
        write_frame(&mut out, b"abc").await.unwrap();
        let mut r = &out[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Incoming::Frame(b"abc".to_vec())
        );
    }
}

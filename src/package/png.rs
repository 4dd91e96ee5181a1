//! The provider logo vRA shows next to the integration: a blue tile with a white address grid,
//! 64×64 RGBA, committed as `assets/logo.png`.
//!
//! The file was drawn once by the code this module held before (its own CRC-32 and Adler-32 over
//! zlib "stored" blocks, so 16 KiB); the bytes are unchanged, so the provider package is too.

/// The bytes of `assets/logo.png`.
const LOGO: &[u8] = include_bytes!("assets/logo.png");

/// The provider logo, as it goes into the vRA package.
pub fn logo() -> Vec<u8> {
    LOGO.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn be32(b: &[u8]) -> usize {
        u32::from_be_bytes(b[..4].try_into().expect("4 bytes")) as usize
    }

    /// Walks the PNG's chunks: `(kind, data)`.
    fn chunks(png: &[u8]) -> Vec<(String, &[u8])> {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "signature");
        let mut at = 8;
        let mut out = Vec::new();
        while at < png.len() {
            let len = be32(&png[at..]);
            let kind = String::from_utf8_lossy(&png[at + 4..at + 8]).into_owned();
            out.push((kind, &png[at + 8..at + 8 + len]));
            at += 12 + len; // length, kind, data, CRC
        }
        assert_eq!(at, png.len(), "the last chunk ends the file");
        out
    }

    #[test]
    fn the_logo_is_a_64_by_64_rgba_png_with_every_row_of_pixels() {
        let png = logo();
        let chunks = chunks(&png);
        let kinds: Vec<&str> = chunks.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let ihdr = chunks[0].1;
        assert_eq!((be32(ihdr), be32(&ihdr[4..])), (64, 64), "width, height");
        // 8 bits, RGBA, deflate, adaptive filtering, not interlaced.
        assert_eq!(&ihdr[8..], [8, 6, 0, 0, 0]);
        // The zlib stream: a valid header, then stored blocks (`BTYPE` 00), whose lengths add
        // up to 64 rows of a filter byte and 64 RGBA pixels.
        let z = chunks[1].1;
        assert_eq!(
            (u16::from(z[0]) << 8 | u16::from(z[1])) % 31,
            0,
            "zlib header"
        );
        let (mut at, mut raw) = (2, Vec::new());
        loop {
            let header = z[at];
            assert_eq!(header & 0b110, 0, "a stored block");
            let len = u16::from_le_bytes([z[at + 1], z[at + 2]]);
            let nlen = u16::from_le_bytes([z[at + 3], z[at + 4]]);
            assert_eq!(nlen, !len, "NLEN is the complement of LEN");
            raw.extend_from_slice(&z[at + 5..at + 5 + usize::from(len)]);
            at += 5 + usize::from(len);
            if header & 1 == 1 {
                break;
            }
        }
        assert_eq!(z.len(), at + 4, "the Adler-32 ends the stream");
        assert_eq!(raw.len(), 64 * (1 + 64 * 4));
        assert!(
            raw.chunks(1 + 64 * 4).all(|row| row[0] == 0),
            "filter: none"
        );
        // The bytes the drawing code produced, whose test checked every chunk's CRC-32 and the
        // Adler-32: a changed file shows here.
        assert_eq!(
            format!("{:x}", Sha256::digest(&png)),
            "ec542c60be18c5515cdcbf9f6c9ce2ef28eea2d2fc89838fb84c1d1cd5687018"
        );
    }
}

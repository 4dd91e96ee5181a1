//! A small PNG logo drawn in code (no image crate, no binary file in the repository).
//!
//! The image data goes into zlib "stored" (uncompressed) blocks: valid for every PNG reader, and
//! a 64×64 logo is only 16 KiB that way.

const SIZE: u32 = 64;

/// The provider logo vRA shows next to the integration: a blue tile with a white address grid.
pub fn logo() -> Vec<u8> {
    let mut raw = Vec::with_capacity(((SIZE * 4 + 1) * SIZE) as usize);
    for y in 0..SIZE {
        raw.push(0); // filter: none
        for x in 0..SIZE {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&SIZE.to_be_bytes());
    ihdr.extend_from_slice(&SIZE.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, adaptive filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn pixel(x: u32, y: u32) -> [u8; 4] {
    const R: i64 = 12; // corner radius
    let (xi, yi, last) = (i64::from(x), i64::from(y), i64::from(SIZE) - 1);
    let cx = xi.clamp(R, last - R);
    let cy = yi.clamp(R, last - R);
    if (xi - cx).pow(2) + (yi - cy).pow(2) > R * R {
        return [0, 0, 0, 0]; // outside the rounded tile
    }
    // 4×4 grid of "addresses": white dots, one of them (the allocated one) orange.
    let (gx, gy) = ((x + 4) % 14, (y + 4) % 14);
    let (col, row) = ((x + 4) / 14, (y + 4) / 14);
    let inside_grid = (1..=4).contains(&col) && (1..=4).contains(&row);
    if inside_grid && (3..=8).contains(&gx) && (3..=8).contains(&gy) {
        return if (col, row) == (3, 2) {
            [255, 153, 0, 255]
        } else {
            [255, 255, 255, 255]
        };
    }
    // Vertical gradient from a deep to a lighter blue.
    let t = y * 255 / (SIZE - 1);
    [
        (20 + t * 30 / 255) as u8,
        (70 + t * 60 / 255) as u8,
        (150 + t * 70 / 255) as u8,
        255,
    ]
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// zlib stream of stored deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len())); // BFINAL, BTYPE=00
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn the_logo_is_a_well_formed_png() {
        let png = logo();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Walk the chunks, checking every CRC.
        let mut at = 8;
        let mut kinds = Vec::new();
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().expect("len")) as usize;
            let body = &png[at + 4..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().expect("crc"));
            assert_eq!(crc32(body), crc);
            kinds.push(String::from_utf8_lossy(&body[..4]).into_owned());
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        assert_eq!(at, png.len());
    }
}

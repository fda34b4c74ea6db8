//! The enrolment URI as a QR code, drawn as a small SVG for the account page.
//!
//! The encoder is `qrcodegen` (Nayuki's reference implementation: one file, no dependencies);
//! the drawing is ours, so the markup is fixed and reviewable: no scripts, no external
//! references, nothing taken from the input except the escaped title.

use std::fmt::Write as _;

use qrcodegen::{QrCode, QrCodeEcc, QrSegment, Version};

use crate::MfaError;

/// Light modules around the code, as ISO/IEC 18004 requires for a reliable scan.
const QUIET_ZONE: i32 = 4;

/// `text` (the `otpauth://` URI) as an SVG QR code at error correction level M, with a
/// `<title>` (for example "Scan this code with your authenticator app") for screen readers.
///
/// The SVG has a `viewBox` in modules and no fixed size, so the page's CSS sizes it; a white
/// background including the quiet zone of 4 modules (the code stays scannable on a dark page);
/// the dark modules as one `<path>` of horizontal runs; `shape-rendering="crispEdges"` so
/// browsers do not anti-alias the module edges into grey seams. Colours are named, so the
/// markup has no `#`, which would end an unencoded `data:` URL.
///
/// The SVG *is* the TOTP secret (so is the URI). Serve it inline in the page or as a base64
/// `data:` URL, in a response with `Cache-Control: no-store`, and never log it.
///
/// # Errors
/// [`MfaError::QrDataTooLong`] when `text` does not fit in a version 40 code (about 2,300
/// bytes at level M).
pub fn qr_svg(text: &str, title: &str) -> Result<String, MfaError> {
    Ok(render_svg(&encode(text)?, title))
}

fn encode(text: &str) -> Result<QrCode, MfaError> {
    let segments = QrSegment::make_segments(text);
    // Exactly level M (no "boost" to a higher level when it would fit in the same version), so
    // the code is what was asked for whatever the text's length.
    QrCode::encode_segments_advanced(
        &segments,
        QrCodeEcc::Medium,
        Version::MIN,
        Version::MAX,
        None,
        false,
    )
    .map_err(|_| MfaError::QrDataTooLong)
}

fn render_svg(code: &QrCode, title: &str) -> String {
    let size = code.size() + 2 * QUIET_ZONE;
    let mut svg = String::with_capacity(4096);
    // `write!` to a `String` cannot fail; the results are ignored for that reason alone.
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" shape-rendering="crispEdges" role="img"><title>{}</title><rect width="{size}" height="{size}" fill="white"/><path fill="black" d=""##,
        escape_xml(title)
    );
    for y in 0..code.size() {
        let mut x = 0;
        while x < code.size() {
            if !code.get_module(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < code.size() && code.get_module(x, y) {
                x += 1;
            }
            let run = x - start;
            let _ = write!(
                svg,
                "M{},{}h{run}v1h-{run}z",
                start + QUIET_ZONE,
                y + QUIET_ZONE
            );
        }
    }
    svg.push_str(r#""/></svg>"#);
    svg
}

/// Escapes text for an XML element's content or a quoted attribute, and drops the characters
/// XML 1.0 does not allow at all (C0 controls but tab, newline and carriage return, U+FFFE and
/// U+FFFF): no escape exists for them, and one would make the SVG document fail to parse.
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::{TotpParams, TotpSecret};
    use crate::uri::otpauth_uri;

    const TITLE: &str = "Scan this code with your authenticator app";

    fn enrolment_uri() -> String {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        otpauth_uri(
            &TotpParams::default(),
            &secret,
            "Acme Corp",
            "zoë&co@example.com",
        )
        .unwrap()
    }

    /// Reads the module matrix back from the SVG's path: the `M x,y h n v1 h-n z` runs that
    /// `render_svg` writes. Returns the side in modules (with the quiet zone) and the matrix.
    fn modules_from_svg(svg: &str) -> (usize, Vec<Vec<bool>>) {
        let view_box = svg.split("viewBox=\"0 0 ").nth(1).unwrap();
        let size: usize = view_box.split(' ').next().unwrap().parse().unwrap();
        let d = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut grid = vec![vec![false; size]; size];
        for run in d.split('M').skip(1) {
            let (xy, rest) = run.split_once('h').unwrap();
            let (x, y) = xy.split_once(',').unwrap();
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            let (len, tail) = rest.split_once('v').unwrap();
            let len: usize = len.parse().unwrap();
            assert_eq!(tail, format!("1h-{len}z"));
            for cell in &mut grid[y][x..x + len] {
                assert!(!*cell, "runs overlap at {x},{y}");
                *cell = true;
            }
        }
        (size, grid)
    }

    /// A minimal well-formedness check of the SVG's markup: tags nest and close, attribute
    /// values are quoted, text appears only in `<title>`; returns the element names in order.
    fn elements(svg: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            if !text.is_empty() {
                assert_eq!(
                    stack.last().map(String::as_str),
                    Some("title"),
                    "text {text:?}"
                );
                assert!(
                    !text.contains('>') && !text.contains('"'),
                    "unescaped {text:?}"
                );
            }
            let close = rest[open..].find('>').unwrap() + open;
            let tag = &rest[open + 1..close];
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in <{tag}>"
            );
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let name = tag.split([' ', '/']).next().unwrap().to_string();
                names.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        assert!(
            rest.is_empty() && stack.is_empty(),
            "unclosed {stack:?}, trailing {rest:?}"
        );
        names
    }

    /// Draws the SVG's modules as a camera would see them (4 pixels a module) and lets an
    /// independent decoder find and read the code: returns the text and the ECC format bits.
    fn decode_svg(svg: &str) -> (String, u16) {
        const SCALE: usize = 4;
        let (size, grid) = modules_from_svg(svg);
        let mut image =
            rqrr::PreparedImage::prepare_from_bitmap(size * SCALE, size * SCALE, |x, y| {
                grid[y / SCALE][x / SCALE]
            });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        let (meta, content) = grids[0].decode().unwrap();
        (content, meta.ecc_level)
    }

    #[test]
    fn the_svg_decodes_back_to_the_uri() {
        let uri = enrolment_uri();
        let (content, ecc_level) = decode_svg(&qr_svg(&uri, TITLE).unwrap());
        assert_eq!(content, uri);
        // The format bits of level M are 00.
        assert_eq!(ecc_level, 0, "error correction level M");
    }

    #[test]
    fn the_svg_draws_the_encoders_matrix_inside_a_quiet_zone() {
        let uri = enrolment_uri();
        let code = encode(&uri).unwrap();
        assert_eq!(code.error_correction_level(), QrCodeEcc::Medium);
        let (size, grid) = modules_from_svg(&render_svg(&code, TITLE));
        let q = QUIET_ZONE as usize;
        assert_eq!(size, code.size() as usize + 2 * q);
        for (y, row) in grid.iter().enumerate() {
            for (x, &dark) in row.iter().enumerate() {
                let inside = (q..size - q).contains(&x) && (q..size - q).contains(&y);
                let expected = inside && code.get_module((x - q) as i32, (y - q) as i32);
                assert_eq!(dark, expected, "module {x},{y}");
            }
        }
    }

    #[test]
    fn the_svg_is_well_formed_accessible_and_inert() {
        let svg = qr_svg(&enrolment_uri(), TITLE).unwrap();
        assert_eq!(elements(&svg), ["svg", "title", "rect", "path"]);
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 "#));
        assert!(svg.contains(r#"shape-rendering="crispEdges""#));
        assert!(svg.contains(&format!("<title>{TITLE}</title>")));
        assert!(svg.ends_with("</svg>"));
        // Only these attributes: no event handlers, no links, no styles.
        let allowed = [
            "xmlns",
            "viewBox",
            "shape-rendering",
            "role",
            "width",
            "height",
            "fill",
            "d",
        ];
        for tag in svg.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap();
            let mut rest = tag.split_once(' ').map_or("", |(_, attributes)| attributes);
            while let Some((name, value)) = rest.trim_start().split_once("=\"") {
                assert!(allowed.contains(&name), "attribute {name}");
                rest = value.split_once('"').unwrap().1;
            }
            assert!(matches!(rest.trim(), "" | "/"), "left over {rest:?}");
        }
        let lower = svg.to_lowercase();
        assert!(!lower.contains("<script") && !lower.contains("href"));
        // The only URL is the SVG namespace, which is a name, not a fetch.
        assert_eq!(lower.matches("http").count(), 1);
    }

    #[test]
    fn the_title_is_escaped() {
        let svg = qr_svg("x", r#"<script>alert("1")</script> & 'x'"#).unwrap();
        assert!(!svg.contains("<script"));
        assert!(svg.contains(
            "<title>&lt;script&gt;alert(&quot;1&quot;)&lt;/script&gt; &amp; &apos;x&apos;</title>"
        ));
        assert_eq!(elements(&svg), ["svg", "title", "rect", "path"]);
    }

    #[test]
    fn characters_xml_forbids_are_dropped_from_the_title() {
        let svg = qr_svg("x", "a\u{0}b\u{8}c\u{b}d\u{1f}e\u{fffe}f\u{ffff}g\th").unwrap();
        assert!(svg.contains("<title>abcdefg\th</title>"), "{svg}");
    }

    #[test]
    fn the_svg_has_no_hash_so_an_unencoded_data_url_keeps_all_of_it() {
        // In `data:image/svg+xml;utf8,<svg ...>` the first `#` starts the fragment and cuts
        // the image off there.
        let svg = qr_svg(&enrolment_uri(), TITLE).unwrap();
        assert!(!svg.contains('#'), "{svg}");
        assert!(svg.contains(r#"fill="white""#) && svg.contains(r#"fill="black""#));
    }

    #[test]
    fn a_fixed_input_gives_the_golden_svg() {
        // Pins the drawing (element order, attributes, run encoding) for a small code, so
        // a change shows up in review as a diff of this file.
        let svg = qr_svg("otpauth://x", "QR").unwrap();
        assert_eq!(
            svg,
            include_str!("../tests/fixtures/qr_golden.svg").trim_end()
        );
    }

    #[test]
    fn text_too_long_for_any_qr_code_is_refused() {
        assert_eq!(
            qr_svg(&"x".repeat(3000), TITLE),
            Err(MfaError::QrDataTooLong)
        );
        assert!(qr_svg(&"x".repeat(2000), TITLE).is_ok());
    }
}

//! A sweep as an SVG picture: one panel per measure (entropy, delay, …) against the swept
//! setting, each with a dashed reference line (Mixmaster's figure).
//!
//! Hand-written rather than with a plotting crate: a few line charts are ~100 lines of
//! SVG text, while plotters pulls in a dozen crates (fonts, images) for a feature the node
//! itself never runs, on build machines shared by everyone.

use std::fmt::Write;

/// One panel: a measure against the swept setting.
pub struct Panel {
    pub label: String,
    pub ys: Vec<f64>,
    /// A dashed horizontal line and what it is.
    pub reference: Option<(String, f64)>,
}

const W: f64 = 640.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// The picture of `panels` over `xs`, titled `title`, the x axis named `x_label`.
pub fn svg(title: &str, x_label: &str, xs: &[f64], panels: &[Panel]) -> String {
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#, W / 2.0, escape(title));
    let (x0, x1) = range(xs.iter().copied());
    for (i, p) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_H + GAP);
        let bottom = top + PANEL_H;
        let (y0, y1) = range(p.ys.iter().copied().chain(p.reference.iter().map(|r| r.1)).chain([0.0]));
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
        let py = |y: f64| bottom - (y - y0) / (y1 - y0) * PANEL_H;
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_H}" fill="none" stroke="black"/>"#,
            W - LEFT - RIGHT
        );
        for k in 0..=4 {
            let (xv, yv) = (x0 + (x1 - x0) * k as f64 / 4.0, y0 + (y1 - y0) * k as f64 / 4.0);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                px(xv),
                bottom + 16.0,
                num(xv)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                py(yv) + 4.0,
                num(yv)
            );
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                W - RIGHT,
                py(yv),
                py(yv)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
            top + PANEL_H / 2.0,
            top + PANEL_H / 2.0,
            escape(&p.label)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + (W - LEFT - RIGHT) / 2.0,
            bottom + 34.0,
            escape(x_label)
        );
        if let Some((name, y)) = &p.reference {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#c33" stroke-dasharray="6 4"/>"##,
                W - RIGHT,
                py(*y),
                py(*y)
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c33">{}</text>"##,
                W - RIGHT - 4.0,
                py(*y) - 4.0,
                escape(name)
            );
        }
        let points: Vec<String> = xs.iter().zip(&p.ys).map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ =
            writeln!(s, r##"<polyline fill="none" stroke="#236" stroke-width="2" points="{}"/>"##, points.join(" "));
        for pt in &points {
            let (cx, cy) = pt.split_once(',').expect("x,y");
            let _ = writeln!(s, r##"<circle cx="{cx}" cy="{cy}" r="3" fill="#236"/>"##);
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest and largest value, widened when they are equal so the scale never divides
/// by zero.
fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_per_value_and_the_reference() {
        let p = Panel {
            label: "entropy <bits>".into(),
            ys: vec![1.0, 2.0, 4.0],
            reference: Some(("Mixmaster".into(), 3.0)),
        };
        let q = Panel { label: "delay".into(), ys: vec![5.0, 5.0, 5.0], reference: None };
        let s = svg("min_pool", "min_pool", &[5.0, 10.0, 20.0], &[p, q]);
        assert!(s.starts_with("<svg ") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<circle").count(), 6);
        assert_eq!(s.matches("stroke-dasharray").count(), 1);
        assert!(s.contains("entropy &lt;bits&gt;") && !s.contains("NaN") && !s.contains("inf"));
        // The smallest x at the left edge; the y scale starts at 0 and ends at the largest.
        assert!(s.contains(&format!("points=\"{LEFT:.1},{:.1} ", TOP + PANEL_H * 3.0 / 4.0)), "{s}");
        assert!(s.contains(&format!(" {:.1},{TOP:.1}\"", W - RIGHT)));
    }
}

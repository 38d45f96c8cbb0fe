//! Results as JSON (for tools), Markdown (for people) and an SVG chart comparing topologies.

use std::{fmt::Write as _, path::Path};

use plotters::prelude::*;
use serde::Serialize;

use crate::deployment::ProcessUsage;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub backend: String,
    pub topology: String,
    pub scenario: String,
    /// `closed` (fixed concurrency) or `open` (fixed arrival rate).
    pub mode: String,
    /// Workers (closed) or requests per second (open).
    pub load: u64,
    pub requests: u64,
    pub errors: u64,
    pub throughput: f64,
    /// Throughput over the bare actix-web handler's in the same run (closed loop only).
    pub ratio_to_bare: Option<f64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub cpu_seconds: f64,
    pub peak_rss_mb: f64,
    pub processes: Vec<ProcessUsage>,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Startup {
    pub backend: String,
    pub topology: String,
    pub empty_ms: f64,
    pub seeded_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub settings: String,
    pub startup: Vec<Startup>,
    pub rows: Vec<Row>,
}

impl Report {
    /// Sets every closed-loop row's ratio to the bare handler's throughput of this run.
    pub fn fill_ratios(&mut self) {
        let ceiling = self
            .rows
            .iter()
            .find(|r| r.scenario == crate::load::Scenario::Hello.label())
            .map(|r| r.throughput)
            .filter(|t| *t > 0.0);
        for row in &mut self.rows {
            row.ratio_to_bare = ceiling
                .filter(|_| row.mode == "closed")
                .map(|c| row.throughput / c);
        }
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# rsvp: monolith vs split\n\nMachine: {}\n\nSettings: {}\n",
            self.machine, self.settings
        );
        let _ = writeln!(
            md,
            "## Start-up to ready\n\n| backend | topology | empty database | seeded database |\n|---|---|---:|---:|"
        );
        for s in &self.startup {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} ms | {:.0} ms |",
                s.backend, s.topology, s.empty_ms, s.seeded_ms
            );
        }
        let _ = writeln!(
            md,
            "\n## Scenarios\n\nLatency in ms; CPU is the seconds all the topology's processes used during the run; RSS is the sum of their peaks.\n"
        );
        let _ = writeln!(
            md,
            "| backend | topology | scenario | load | req/s | × bare | p50 | p90 | p99 | p99.9 | errors | CPU s | RSS MB |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let load = if r.mode == "closed" {
                format!("{} workers", r.load)
            } else {
                format!("{}/s open", r.load)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.0} |",
                r.backend,
                r.topology,
                r.scenario,
                load,
                r.throughput,
                r.ratio_to_bare
                    .map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}")),
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.p999_ms,
                r.errors,
                r.cpu_seconds,
                r.peak_rss_mb
            );
        }
        md
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("results.json"), json).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("results.md"), self.markdown()).map_err(|e| e.to_string())?;
        self.chart(&dir.join("chart.svg"))
    }

    /// Closed-loop throughput and p99 per scenario, one bar per backend and topology.
    fn chart(&self, path: &Path) -> Result<(), String> {
        // The bare handler is the ceiling: stated in the title, not drawn, or it flattens the rest.
        let ceiling = self
            .rows
            .iter()
            .find(|r| r.topology == "bare actix-web")
            .map_or(0.0, |r| r.throughput);
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.mode == "closed" && r.topology != "bare actix-web")
            .collect();
        let mut scenarios: Vec<&str> = Vec::new();
        let mut series: Vec<String> = Vec::new();
        for r in &rows {
            if !scenarios.contains(&r.scenario.as_str()) {
                scenarios.push(&r.scenario);
            }
            let name = format!("{} · {}", r.topology, r.backend);
            if !series.contains(&name) {
                series.push(name);
            }
        }
        let (width, height) = (1280u32, 860u32);
        let root = SVGBackend::new(path, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((2, 1));
        let value = |r: &Row, panel: usize| if panel == 0 { r.throughput } else { r.p99_ms };
        let titles = [
            format!(
                "Throughput, closed loop (requests/s, higher is better; a bare actix-web handler: {ceiling:.0}/s)"
            ),
            "p99 latency, closed loop (ms, lower is better)".to_owned(),
        ];
        let palette = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
            RGBColor(227, 119, 194),
            RGBColor(127, 127, 127),
        ];
        for (panel, area) in panels.iter().enumerate() {
            let max = rows
                .iter()
                .map(|r| value(r, panel))
                .fold(0.0f64, f64::max)
                .max(1e-9)
                * 1.15;
            let (left, top, bottom) = (70i32, 40i32, (height / 2) as i32 - 60);
            let plot_width = width as i32 - left - 240;
            area.draw(&Text::new(
                titles[panel].as_str(),
                (left, 12),
                ("sans-serif", 18).into_font(),
            ))
            .map_err(|e| e.to_string())?;
            area.draw(&PathElement::new(
                vec![(left, top), (left, bottom), (left + plot_width, bottom)],
                BLACK,
            ))
            .map_err(|e| e.to_string())?;
            for tick in 0..=4 {
                let v = max * tick as f64 / 4.0;
                let y = bottom - ((bottom - top) as f64 * tick as f64 / 4.0) as i32;
                area.draw(&Text::new(
                    format!("{v:.0}"),
                    (5, y - 6),
                    ("sans-serif", 12).into_font(),
                ))
                .map_err(|e| e.to_string())?;
                area.draw(&PathElement::new(
                    vec![(left, y), (left + plot_width, y)],
                    RGBColor(225, 225, 225),
                ))
                .map_err(|e| e.to_string())?;
            }
            let group = plot_width / scenarios.len().max(1) as i32;
            let bar = ((group - 16) / series.len().max(1) as i32).max(2);
            for (g, scenario) in scenarios.iter().enumerate() {
                let x0 = left + g as i32 * group + 8;
                // "event detail (direct, no gateway)" goes on two lines.
                let (first, second) = scenario.split_once(" (").unwrap_or((scenario, ""));
                let label_font = ("sans-serif", 13).into_font();
                area.draw(&Text::new(
                    first.to_owned(),
                    (x0, bottom + 8),
                    label_font.clone(),
                ))
                .map_err(|e| e.to_string())?;
                if !second.is_empty() {
                    area.draw(&Text::new(
                        format!("({second}"),
                        (x0, bottom + 24),
                        label_font,
                    ))
                    .map_err(|e| e.to_string())?;
                }
                for (s, name) in series.iter().enumerate() {
                    let Some(r) = rows.iter().find(|r| {
                        r.scenario == *scenario
                            && format!("{} · {}", r.topology, r.backend) == *name
                    }) else {
                        continue;
                    };
                    let h = ((bottom - top) as f64 * value(r, panel) / max) as i32;
                    let x = x0 + s as i32 * bar;
                    area.draw(&Rectangle::new(
                        [(x, bottom - h), (x + bar - 2, bottom)],
                        palette[s % palette.len()].filled(),
                    ))
                    .map_err(|e| e.to_string())?;
                }
            }
            for (s, name) in series.iter().enumerate() {
                let (x, y) = (left + plot_width + 20, top + s as i32 * 22);
                area.draw(&Rectangle::new(
                    [(x, y), (x + 14, y + 14)],
                    palette[s % palette.len()].filled(),
                ))
                .map_err(|e| e.to_string())?;
                area.draw(&Text::new(
                    name.clone(),
                    (x + 20, y),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())
    }
}

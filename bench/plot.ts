// Latency distributions as a PNG: hand-written SVG (one row per series, every sample a dot on a log
// axis, the p50–p95 range a bar, p99 a red tick), rendered by Debian's Chromium (docs/decisions.md).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { percentiles } from './stats.js';

export interface PlotRow {
  name: string;
  samples: number[];
  /** Drawn grey: what the measured rows are compared with. */
  baseline: boolean;
}

export function distributionSvg(title: string, legend: string, rows: PlotRow[]) {
  const w = 1200;
  const left = 330;
  const right = 30;
  const top = 50;
  const rowH = 30;
  const h = top + rows.length * rowH + 60;
  const all = rows.flatMap((r) => r.samples).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const span = Math.log10(hi) - Math.log10(lo) || 1;
  const x = (ms: number) =>
    left + ((Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / span) * (w - left - right);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [`<rect width="${w}" height="${h}" fill="#fff"/>`];
  parts.push(
    `<text x="${w / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`,
  );
  for (let d = lo; d <= hi; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi) break;
      const gx = x(v);
      const stroke = m === 1 ? '#bbb' : '#eee';
      parts.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${h - 50}" stroke="${stroke}"/>`);
      const label = v >= 1000 ? `${v / 1000} s` : `${v} ms`;
      parts.push(
        `<text x="${gx}" y="${h - 32}" text-anchor="middle" font-size="12" fill="#444">${label}</text>`,
      );
    }
  }
  rows.forEach((r, i) => {
    const cy = top + i * rowH + rowH / 2;
    const color = r.baseline ? '#777' : '#1f6fb2';
    if (i % 2 === 0)
      parts.push(`<rect x="0" y="${cy - rowH / 2}" width="${w}" height="${rowH}" fill="#f2f5fa"/>`);
    parts.push(
      `<text x="${left - 10}" y="${cy + 4}" text-anchor="end" font-size="13" fill="${r.baseline ? '#555' : '#111'}">${esc(r.name)}</text>`,
    );
    if (!r.samples.length) return;
    const { p50, p95, p99 } = percentiles(r.samples);
    const barW = Math.max(2, x(p95) - x(p50));
    parts.push(
      `<rect x="${x(p50)}" y="${cy - 7}" width="${barW}" height="14" fill="${color}" opacity="0.25"/>`,
    );
    // A fixed pseudo-random vertical spread, so equal samples do not hide each other.
    r.samples.forEach((v, j) => {
      const jitter = (((j * 7919) % 13) - 6) * 0.8;
      parts.push(`<circle cx="${x(v)}" cy="${cy + jitter}" r="2.6" fill="${color}" opacity="0.65"/>`);
    });
    parts.push(
      `<line x1="${x(p50)}" y1="${cy - 10}" x2="${x(p50)}" y2="${cy + 10}" stroke="${color}" stroke-width="3"/>`,
    );
    parts.push(
      `<line x1="${x(p99)}" y1="${cy - 8}" x2="${x(p99)}" y2="${cy + 8}" stroke="#c0392b" stroke-width="2"/>`,
    );
  });
  parts.push(`<text x="${left}" y="${h - 10}" font-size="12" fill="#444">${esc(legend)}</text>`);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="DejaVu Sans, sans-serif">${parts.join('')}</svg>`;
  return { svg, w, h };
}

/** Renders `svg` (w × h) to a PNG at `file`. */
export async function renderPng(svg: string, w: number, h: number, file: string): Promise<void> {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: w, height: h } });
    await page.setContent(`<!doctype html><html><body style="margin:0">${svg}</body></html>`);
    await mkdir(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file, clip: { x: 0, y: 0, width: w, height: h } });
  } finally {
    await browser.close();
  }
}

import { describe, expect, it } from 'vitest';
import { tagReportHtml } from '../../src/catalog/html.js';
import type { RunTelemetryRow } from '../../src/catalog/catalog.js';
import { finishRunTelemetry, foldReading, parseTelemetryQuery, startRunTelemetry } from '../../src/domain/telemetry.js';

/** A run's telemetry as the sampler makes it: GPU 0 busy, GPU 1 idle, memory rising. */
function sampled(): RunTelemetryRow['gpuTelemetry'] {
  const state = startRunTelemetry(
    [
      { slotId: 'h/gpu0', index: 0, uuid: 'GPU-0' },
      { slotId: 'h/gpu1', index: 1, uuid: 'GPU-1' },
    ],
    5,
    0,
  );
  for (let i = 0; i < 10; i++)
    foldReading(
      state,
      parseTelemetryQuery(
        `0, GPU-0, 95, ${1000 * (i + 1)}, 300, 60, 1980, 0x0, 0\n1, GPU-1, 0, 10, 60, 35, 210, 0x1, 0`,
      ),
      i * 5000,
    );
  return finishRunTelemetry(state, 50_000);
}

describe('the HTML report’s GPU charts', () => {
  it('draws each run’s utilization and memory per GPU as inline SVG, with no script of its own', () => {
    const html = tagReportHtml('t', [], undefined, [
      { id: 'exp-a<b', hypothesis: 'bigger <batch>', gpuTelemetry: sampled() },
    ]);
    const section = html.slice(html.indexOf('<h2>GPUs</h2>'), html.indexOf('<script id="data"'));
    expect(section).not.toContain('<script');
    expect(section).toContain('id="util-exp-a&lt;b"');
    expect(section).toContain('id="mem-exp-a&lt;b"');
    expect(section).toContain('bigger &lt;batch&gt;');
    const lines = [...section.matchAll(/<polyline class="gpu-line" data-gpu="(\d)"[^>]*points="([^"]*)"/g)];
    // Two charts × two GPUs, ten points each.
    expect(lines.map((m) => m[1])).toEqual(['0', '1', '0', '1']);
    for (const [, , points] of lines) expect(points!.split(' ')).toHaveLength(10);
    // GPU 0 at 95 % sits near the top of the utilization chart; GPU 1 at 0 % on its axis.
    const ys = (points: string) => points.split(' ').map((p) => Number(p.split(',')[1]));
    expect(Math.max(...ys(lines[0]![2]!))).toBeLessThan(Math.min(...ys(lines[1]![2]!)));
    // Memory rises: the line goes up (smaller y) from its first point to its last.
    const memory = ys(lines[2]![2]!);
    expect(memory.at(-1)!).toBeLessThan(memory[0]!);
    expect(section).toContain('10000 MiB');
  });

  it('says so when no run of the tag has telemetry', () => {
    expect(tagReportHtml('t', [], undefined, [])).toContain('id="no-gpu-telemetry"');
  });
});

/**
 * How long each phase of a request took, answered as a `Server-Timing` header (a browser's network
 * panel and the benches read it): where a sandbox create's time goes besides its host's agent.
 */
export class PhaseTimes {
  private last = performance.now();
  private readonly phases: [string, number][] = [];

  /** Ends the phase running since the previous mark (or since this was made). */
  mark(name: string): void {
    const now = performance.now();
    this.phases.push([name, now - this.last]);
    this.last = now;
  }

  header(): string {
    return this.phases.map(([name, ms]) => `${name};dur=${ms.toFixed(1)}`).join(', ');
  }
}

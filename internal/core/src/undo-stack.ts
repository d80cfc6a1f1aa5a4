import type { Logger } from 'pino';

/**
 * Acquire → register the undo → on failure run the undos in reverse. An undo that fails is logged
 * and the rest still run: a rollback never throws over the error that caused it.
 */
export class UndoStack {
  private readonly steps: { what: string; undo: () => unknown }[] = [];

  push(what: string, undo: () => unknown): void {
    this.steps.push({ what, undo });
  }

  async run(logger: Logger): Promise<void> {
    while (this.steps.length) {
      const step = this.steps.pop()!;
      try {
        await step.undo();
      } catch (err) {
        logger.error({ err, step: step.what }, 'rollback step failed');
      }
    }
  }
}

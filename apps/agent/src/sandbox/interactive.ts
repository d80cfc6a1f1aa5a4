import { Code, ConnectError } from '@wrenn/core';

export interface InteractiveCommand {
  pty: boolean;
  user: string;
}

/**
 * Commands started `interactive` (or with a terminal), for as long as their output stream lasts:
 * only these take input or a resize, and only as the user they run as.
 */
export class InteractiveCommands {
  private readonly commands = new Map<string, InteractiveCommand>();

  /** Registers the command; the returned function forgets it (when its stream ends). */
  register(sandboxId: string, pid: number, command: InteractiveCommand): () => void {
    const key = `${sandboxId}/${pid}`;
    this.commands.set(key, command);
    return () => {
      if (this.commands.get(key) === command) this.commands.delete(key);
    };
  }

  get(sandboxId: string, pid: number): InteractiveCommand {
    const command = this.commands.get(`${sandboxId}/${pid}`);
    if (!command) {
      throw new ConnectError(
        `no interactive command with pid ${pid} is running in sandbox ${sandboxId}`,
        Code.NotFound,
      );
    }
    return command;
  }
}

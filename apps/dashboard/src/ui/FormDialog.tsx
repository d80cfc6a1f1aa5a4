import * as Dialog from '@radix-ui/react-dialog';
import { useState, type FormEvent, type ReactNode } from 'react';
import { ErrorState } from './states.js';

/**
 * A button that opens a form in a dialog (Radix: focus kept inside, Escape closes), which closes
 * when `submit` succeeds; on failure it stays open with `error` shown, to fix and retry.
 */
export function FormDialog(props: {
  trigger: string;
  title: string;
  description: ReactNode;
  busy: boolean;
  busyLabel: string;
  submitLabel: string;
  error: unknown;
  submit: () => Promise<unknown>;
  children: ReactNode;
  disabled?: boolean;
  /** The page's main action: the trigger is a primary button. */
  primary?: boolean;
  wide?: boolean;
  onOpen?: () => void;
}) {
  const [open, setOpen] = useState(false);
  async function submit(event: FormEvent) {
    event.preventDefault();
    try {
      await props.submit();
      setOpen(false);
    } catch {
      // Shown from `error`.
    }
  }
  return (
    <Dialog.Root
      open={open}
      onOpenChange={(next) => {
        if (next) props.onOpen?.();
        setOpen(next);
      }}
    >
      <Dialog.Trigger asChild>
        <button
          type="button"
          className={props.primary ? 'button button-primary' : 'button'}
          disabled={props.disabled}
        >
          {props.trigger}
        </button>
      </Dialog.Trigger>
      <Dialog.Portal>
        <Dialog.Overlay className="overlay" />
        <Dialog.Content className={props.wide ? 'dialog dialog-wide' : 'dialog'}>
          <Dialog.Title>{props.title}</Dialog.Title>
          <Dialog.Description className="muted">{props.description}</Dialog.Description>
          <form onSubmit={(e) => void submit(e)}>
            {props.children}
            {props.error ? <ErrorState error={props.error} /> : null}
            <div className="dialog-actions">
              <Dialog.Close asChild>
                <button type="button" className="button">
                  Cancel
                </button>
              </Dialog.Close>
              <button type="submit" className="button button-primary" disabled={props.busy}>
                {props.busy ? props.busyLabel : props.submitLabel}
              </button>
            </div>
          </form>
        </Dialog.Content>
      </Dialog.Portal>
    </Dialog.Root>
  );
}

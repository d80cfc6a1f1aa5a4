import type { ReactNode } from 'react';

/**
 * A button that ends or removes something (revoke, delete, kill, cancel). With `confirm`, the browser
 * asks that question first and nothing happens unless it is answered yes.
 */
export function DangerButton({
  children,
  label,
  disabled,
  confirm,
  onClick,
}: {
  children: ReactNode;
  /** Its accessible name when the text alone would be ambiguous in a list ("Revoke ci-key"). */
  label?: string;
  disabled?: boolean;
  confirm?: string;
  onClick: () => void;
}) {
  return (
    <button
      type="button"
      className="button button-danger"
      aria-label={label}
      disabled={disabled}
      onClick={() => {
        if (confirm === undefined || window.confirm(confirm)) onClick();
      }}
    >
      {children}
    </button>
  );
}

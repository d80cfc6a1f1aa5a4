import { useState, type FormEvent } from 'react';
import { api, unwrap, WrennApiError } from '../api/client.js';
import { setSession } from '../api/session.js';

/** Sign in (or sign up, when the server allows it or an invite is given). */
export function SignIn() {
  const [mode, setMode] = useState<'signin' | 'signup'>('signin');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const body = { email, password };
      const session = await unwrap(
        mode === 'signin' ? api.POST('/v1/auth/login', { body }) : api.POST('/v1/auth/signup', { body }),
      );
      setSession({ token: session.token, email: session.user.email, teamId: session.team?.id });
    } catch (err) {
      setError(err instanceof WrennApiError ? err.message : 'The server could not be reached.');
    } finally {
      setBusy(false);
    }
  }

  const title = mode === 'signin' ? 'Sign in' : 'Sign up';
  return (
    <main className="signin">
      <form className="card signin-card" onSubmit={(e) => void submit(e)} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <span className="logo" aria-hidden="true">
            ◆
          </span>{' '}
          Wrenn
        </h1>
        <p className="muted">{title} to manage your sandboxes.</p>
        <label className="field">
          <span>Email</span>
          <input
            type="email"
            autoComplete="email"
            required
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
        </label>
        <label className="field">
          <span>Password</span>
          <input
            type="password"
            autoComplete={mode === 'signin' ? 'current-password' : 'new-password'}
            required
            minLength={mode === 'signup' ? 8 : undefined}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? `${title}…` : title}
        </button>
        <button
          type="button"
          className="link"
          onClick={() => {
            setMode(mode === 'signin' ? 'signup' : 'signin');
            setError(undefined);
          }}
        >
          {mode === 'signin' ? 'No account? Sign up' : 'Have an account? Sign in'}
        </button>
      </form>
    </main>
  );
}

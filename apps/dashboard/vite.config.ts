import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// Built into dist/, which the server serves at `/`; everything is bundled (nothing from a CDN).
export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 400 },
  server: { proxy: { '/v1': 'http://127.0.0.1:8080' } },
});

// Build of the storefront. Hashed file names under assets/ let the gateway cache them forever;
// the dev server proxies the API to a local gateway so the app stays same-origin.
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
  },
  server: {
    proxy: {
      '/api': process.env.FERROSHOP_GATEWAY ?? 'http://127.0.0.1:8080',
      '/.well-known': process.env.FERROSHOP_GATEWAY ?? 'http://127.0.0.1:8080',
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});

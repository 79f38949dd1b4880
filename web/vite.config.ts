// Build of the storefront. Hashed file names under assets/ let the gateway cache them forever;
// a gzip copy of each text file is written beside it, which the gateway sends to browsers that
// accept gzip (it serves precompressed files, it does not compress per request). The dev server
// proxies the API to a local gateway so the app stays same-origin.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vitest/config';

const COMPRESSIBLE = /\.(js|css|html|svg|json)$/;

function gzipCopies(dir: string): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) gzipCopies(path);
    else if (COMPRESSIBLE.test(name)) writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }));
  }
}

function precompress(): Plugin {
  let outDir = 'dist';
  return {
    name: 'ferroshop-precompress',
    apply: 'build',
    configResolved(config) {
      outDir = config.build.outDir;
    },
    closeBundle() {
      gzipCopies(outDir);
    },
  };
}

const gateway = process.env.FERROSHOP_GATEWAY ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react(), precompress()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
  },
  server: {
    proxy: { '/api': gateway, '/.well-known': gateway },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});

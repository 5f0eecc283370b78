/** Runs only the must-fail canary, under the same global setup as the suite (see .ci/run). */
import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

export default defineConfig({ ...base, test: { ...base.test, include: ['test/canary/*.canary.ts'] } });

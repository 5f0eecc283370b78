/**
 * Prometheus metrics of witness submission (names are part of the operations contract).
 *
 * MUST: keep the metric names and labels unchanged; labels are witness keys and outcomes only.
 * MUST NOT: record checkpoint contents.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface WitnessMetrics {
  submissions: Counter<'witness' | 'outcome'>;
  lagEntries: Gauge;
  lagSeconds: Gauge;
  quorumSeconds: Histogram;
}

export function registerWitnessMetrics(registry: Registry): WitnessMetrics {
  return {
    submissions: new Counter({
      name: 'paylog_witness_submissions_total',
      help: 'add-checkpoint requests by witness key and outcome (cosigned, conflict, inconsistent, forbidden, unknown_log, bad_request, error)',
      labelNames: ['witness', 'outcome'],
      registers: [registry],
    }),
    lagEntries: new Gauge({ name: 'paylog_witness_lag_entries', help: 'Latest signed tree size minus the newest size that reached the witness quorum', registers: [registry], aggregator: 'max' }),
    lagSeconds: new Gauge({ name: 'paylog_witness_lag_seconds', help: 'Seconds since the oldest signed checkpoint newer than the newest witnessed one was published (0 when caught up)', registers: [registry], aggregator: 'max' }),
    quorumSeconds: new Histogram({
      name: 'paylog_witness_quorum_seconds',
      help: 'Time from signing a checkpoint to it reaching the witness quorum',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
  };
}

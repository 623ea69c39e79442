import { LEASE_MESSAGES_MAX, type LeaseRequestInput } from '../domain/lease-request.js';
import type { Lease, LeaseAnswer, LeaseMessages, LeaseRelease } from '../workflows/definitions.js';

interface Waiting<T, A> {
  message: T;
  resolve: (answer: A) => void;
  reject: (error: unknown) => void;
}

/** What the pool answers a batch: each request's answer in order, and the leases granted to runs not in it. */
export interface BatchAnswer {
  answers: LeaseAnswer[];
  granted: Lease[];
}

/**
 * One orchestrator's lease messages to the pool. A message goes at once when none is on its way;
 * those that come while one is are gathered and go together when it returns. A quiet fleet waits
 * for nothing; a busy one costs the pool's history one update for many runs rather than one each.
 */
export class LeaseMessenger {
  private releases: Waiting<LeaseRelease, void>[] = [];
  private requests: Waiting<LeaseRequestInput, LeaseAnswer>[] = [];
  private sending = false;

  constructor(
    private readonly send: (batch: LeaseMessages) => Promise<BatchAnswer>,
    /** Tells a run the pool granted it a lease in a batch's pass (the pool sends no signal for those). */
    private readonly tell: (lease: Lease) => Promise<void>,
  ) {}

  request(message: LeaseRequestInput): Promise<LeaseAnswer> {
    return new Promise((resolve, reject) => {
      this.requests.push({ message, resolve, reject });
      this.flush();
    });
  }

  release(message: LeaseRelease): Promise<void> {
    return new Promise((resolve, reject) => {
      this.releases.push({ message, resolve, reject });
      this.flush();
    });
  }

  private flush(): void {
    if (this.sending) return;
    this.sending = true;
    void this.drain().finally(() => {
      this.sending = false;
      if (this.releases.length + this.requests.length > 0) this.flush();
    });
  }

  private async drain(): Promise<void> {
    while (this.releases.length + this.requests.length > 0) {
      const releases = this.releases.splice(0, LEASE_MESSAGES_MAX);
      const requests = this.requests.splice(0, LEASE_MESSAGES_MAX);
      let answer: BatchAnswer;
      try {
        answer = await this.send({
          releases: releases.map((waiting) => waiting.message),
          requests: requests.map((waiting) => waiting.message),
        });
      } catch (error) {
        // Each caller's step retries on its own.
        for (const waiting of [...releases, ...requests]) waiting.reject(error);
        continue;
      }
      for (const waiting of releases) waiting.resolve();
      requests.forEach((waiting, i) => waiting.resolve(answer.answers[i] ?? { queued: true }));
      // Not awaited: the next batch does not wait on them (a run not told asks again and is given its lease).
      void Promise.all(answer.granted.map((lease) => this.tell(lease).catch(() => undefined)));
    }
  }
}

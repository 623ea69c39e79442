import { z } from 'zod';
import { formatIssues, PrioritySchema, RequirementsSchema } from './request.js';

/**
 * What an experiment asks the pool for: the requirements it is placed by, its priority, its tag
 * (fair share), the datasets it reads (locality) and the longest it holds the lease (backfill).
 * Checked before the pool accepts it, so a malformed request never reaches the pool's state.
 */
export const LeaseRequestInputSchema = z.strictObject({
  experimentId: z.string().min(1).max(256),
  requirements: RequirementsSchema,
  priority: PrioritySchema,
  tag: z.string().min(1).max(256).optional(),
  datasets: z.array(z.string().min(1).max(1024)).max(256).optional(),
  holdSeconds: z.number().nonnegative().finite().optional(),
});

export type LeaseRequestInput = z.output<typeof LeaseRequestInputSchema>;

/** Why a lease request is refused, in one line; null when it is well formed. */
export function leaseRequestProblem(input: unknown): string | null {
  const parsed = LeaseRequestInputSchema.safeParse(input);
  return parsed.success ? null : `malformed lease request: ${formatIssues(parsed.error).join('; ')}`;
}

/** The most messages one batch carries (a batch is what one orchestrator gathered in one round trip). */
export const LEASE_MESSAGES_MAX = 1000;

export const LeaseReleaseSchema = z.strictObject({
  experimentId: z.string().min(1).max(256),
  leaseId: z.string().min(1).max(256).optional(),
});

export const LeaseMessagesSchema = z.strictObject({
  releases: z.array(LeaseReleaseSchema).max(LEASE_MESSAGES_MAX),
  requests: z.array(LeaseRequestInputSchema).max(LEASE_MESSAGES_MAX),
});

/** Why a lease release is refused, in one line; null when it is well formed. */
export function leaseReleaseProblem(input: unknown): string | null {
  const parsed = LeaseReleaseSchema.safeParse(input);
  return parsed.success ? null : `malformed lease release: ${formatIssues(parsed.error).join('; ')}`;
}

/** Why a batch of lease messages is refused, in one line; null when it is well formed. */
export function leaseMessagesProblem(input: unknown): string | null {
  const parsed = LeaseMessagesSchema.safeParse(input);
  return parsed.success ? null : `malformed lease messages: ${formatIssues(parsed.error).join('; ')}`;
}

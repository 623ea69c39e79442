import os from 'node:os';
import type { Slot } from '../domain/fleet.js';
import { MIN_DEFAULT_CPU_SLOTS } from '../gpu-worker/discover.js';
import { devPorts } from '../shared/settings.js';
import { stackPointerPath } from '../shared/stack.js';
import { hostPort, type ListenPlan } from '../temporal/listen.js';

/** What `expctl dev` says once it is up: where everything is, and how other hosts join. */
export function upBanner(stack: {
  uiUrl: string;
  address: string;
  home: string;
  /** Whether this stack is the user's default (its pointer was written). */
  isDefault: boolean;
  plan: ListenPlan;
  fleetRemoteUrl: string | undefined;
  codecEndpoint: string;
  /** The local GPU worker, if one was started; cpuSlots as given on the command line. */
  worker: { host: string; slots: Slot[] } | undefined;
  cpuSlots: number | undefined;
}): string {
  const { plan, worker, home } = stack;
  const ports = devPorts();
  const clients = stack.isDefault
    ? `\`expctl\` from any directory of this user finds this stack (recorded in ${stackPointerPath()})`
    : `another stack is this user's default (${stackPointerPath()}): give this one's commands EXPCTL_HOME=${home}`;
  const slots = worker?.slots.map((slot) => `${slot.slotId} (${slot.acceleratorClass})`).join(', ');
  const remote = plan.advertised
    ? `
  Other hosts:      TEMPORAL_ADDRESS=${hostPort(plan.advertised, ports.grpcPort)} expctl worker   (Web UI http://${hostPort(plan.advertised, ports.uiPort)})
  Fleet remote:     EXPCTL_FLEET_REMOTE=${stack.fleetRemoteUrl} on hosts that submit (commits travel through it)`
    : `
  Other hosts:      none can connect (only this host's loopback): start with --listen ADDR to serve them`;
  return `
expctl dev is up.
  Temporal Web UI:  ${stack.uiUrl}
  Temporal gRPC:    ${stack.address}
  Commands:         ${clients}${remote}
  Codec endpoint:   ${stack.codecEndpoint}
                    (payloads are encrypted: paste this into the Web UI's codec server setting to read them there)
  Orchestrator:     task queue expctl-control; health Schedule expctl-health every minute
  GPU worker:       ${worker ? `${worker.host} with ${slots}${cpuSlotNote(worker.slots, stack.cpuSlots)}` : 'none here (--no-worker): GPU hosts join with `expctl worker`'}
  State:            ${home}
Press Ctrl-C to stop everything.
`;
}

/** How many CPU slots the local worker offers and why, when they are CPU slots. */
function cpuSlotNote(slots: Slot[], cpuSlots: number | undefined): string {
  const cpu = slots.filter((slot) => slot.acceleratorClass === 'cpu').length;
  if (cpu === 0) return '';
  const cores = os.availableParallelism();
  const why =
    cpuSlots !== undefined
      ? 'set by --cpu-slots'
      : `the default for ${cores} cores (half, at least ${MIN_DEFAULT_CPU_SLOTS}); --cpu-slots N changes it`;
  return `\n                    ${cpu} CPU slot${cpu === 1 ? '' : 's'}, so ${cpu} run${cpu === 1 ? '' : 's'} at once: ${why}`;
}

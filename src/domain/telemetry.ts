/**
 * GPU telemetry of a run and the failure of a GPU while it trains. Pure: the worker's sampler
 * decides with it, the record and reports read it, tests check it.
 */

/** A GPU of the run failed while it trained: the run was stopped and ends gpu_failed, naming it. */
export interface GpuFailure {
  slotId: string;
  index: number;
  uuid: string;
  /** What showed the failure, readable: "nvidia-smi no longer lists GPU 3", "2 uncorrected ECC errors". */
  evidence: string;
  at: string;
}

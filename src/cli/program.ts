import { Command } from 'commander';
import { declareRun, declareExperimentReads } from './declarations/experiments.js';
import { declareBatch } from './declarations/batch.js';
import { declareTag } from './declarations/tag.js';
import { declareRepeat } from './declarations/actions.js';
import { declareRecords } from './declarations/records.js';
import { declarePool } from './declarations/pool.js';
import { declareWorkers } from './declarations/worker.js';
import { declareHealth } from './declarations/health.js';
import { declareAuth } from './declarations/auth.js';
import { declareSetup } from './declarations/setup.js';
import { declareDev } from './declarations/dev.js';
import { declareFleetRemote } from './declarations/fleet-remote.js';
import { declareKeys } from './declarations/keys.js';
import { declareCodecServer } from './declarations/codec-server.js';
import { declareMcp } from './declarations/mcp.js';
import { declareSchema } from './declarations/schema.js';
import { declareInstallTemporal } from './declarations/install-temporal.js';
import { declareInstallSeaweedFs } from './declarations/install-seaweedfs.js';
import { declarePromotion, declarePromotionShow } from './declarations/promotion.js';
import { declareLineage } from './declarations/lineage.js';
import { declareData } from './declarations/data.js';
import { declareArtifacts } from './declarations/artifacts.js';
import { declareStore } from './declarations/store.js';

/**
 * Every `expctl` command, gathered in the order help lists them. Each is declared in one place, its
 * module of declarations/ (name, options, help, the action that loads its implementation); the MCP
 * tools are checked against these same declarations (test/unit/cli-declarations.test.ts).
 */
export function declareCommands(program: Command): Command {
  declareRun(program);
  declareBatch(program);
  declareExperimentReads(program);
  declareArtifacts(program);
  declareTag(program);
  declareRepeat(program);
  declareRecords(program);
  declarePool(program);
  declareWorkers(program);
  declareHealth(program);
  declareAuth(program);
  declareSetup(program);
  declareDev(program);
  declareFleetRemote(program);
  declareKeys(program);
  declareCodecServer(program);
  declareMcp(program);
  declareSchema(program);
  declareInstallTemporal(program);
  declareInstallSeaweedFs(program);
  declarePromotion(program);
  declareLineage(program);
  declarePromotionShow(program);
  declareData(program);
  declareStore(program);
  return program;
}

/** The `expctl` program with every command, as main.ts runs it and the tests read it. */
export function expctlProgram(version: string): Command {
  const program = new Command()
    .name('expctl')
    .description('Durable experiment orchestration for ML research on GPU fleets, on Temporal')
    .version(version, '-V, --version', 'print the version')
    // Options after a subcommand are that command's (`data add --version 3` is not expctl's version).
    .enablePositionalOptions()
    .showHelpAfterError();
  return declareCommands(program);
}

/**
 * Every command of the CLI, each loaded when it runs: `expctl run` does not pay at every start for
 * the worker's native bridge, the workflow bundler, PostgreSQL or the catalog writer.
 */
type Action = (...args: never[]) => unknown;
function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K) {
  type F = M[K] extends Action ? M[K] : never;
  return async (...args: Parameters<F>): Promise<Awaited<ReturnType<F>>> =>
    ((await load())[name] as F)(...args) as Awaited<ReturnType<F>>;
}
const batchModule = () => import('./commands/batch.js');
const authModule = () => import('./commands/auth.js');
const codecServerModule = () => import('./commands/codec-server.js');
const devModule = () => import('./commands/dev.js');
const experimentsModule = () => import('./commands/experiments.js');
const healthModule = () => import('./commands/health.js');
const installTemporalModule = () => import('./commands/install-temporal.js');
const keysModule = () => import('./commands/keys.js');
const poolModule = () => import('./commands/pool.js');
const setupModule = () => import('./commands/setup.js');
const tagModule = () => import('./commands/tag.js');
const actionsModule = () => import('./commands/actions.js');
const recordsModule = () => import('./commands/records.js');
const workerModule = () => import('./commands/worker.js');
const promotionModule = () => import('./commands/promotion.js');
const lineageModule = () => import('./commands/lineage.js');
const fleetRemoteModule = () => import('./commands/fleet-remote.js');
const dataModule = () => import('./commands/data.js');
export const batchCommand = lazy(batchModule, 'batchCommand');
export const refuseBatch = lazy(batchModule, 'refuseBatch');
export const authInitCommand = lazy(authModule, 'authInitCommand');
export const authIssueCommand = lazy(authModule, 'authIssueCommand');
export const authRevokeCommand = lazy(authModule, 'authRevokeCommand');
export const authWhoamiCommand = lazy(authModule, 'authWhoamiCommand');
export const codecServerCommand = lazy(codecServerModule, 'codecServerCommand');
export const devCommand = lazy(devModule, 'devCommand');
export const cancelCommand = lazy(experimentsModule, 'cancelCommand');
export const logsCommand = lazy(experimentsModule, 'logsCommand');
export const refuseRun = lazy(experimentsModule, 'refuseRun');
export const runCommand = lazy(experimentsModule, 'runCommand');
export const showCommand = lazy(experimentsModule, 'showCommand');
export const waitCommand = lazy(experimentsModule, 'waitCommand');
export const healthCommand = lazy(healthModule, 'healthCommand');
export const scheduleEnsureCommand = lazy(healthModule, 'scheduleEnsureCommand');
export const installTemporalCommand = lazy(installTemporalModule, 'installTemporalCommand');
export const keysInitCommand = lazy(keysModule, 'keysInitCommand');
export const keysListCommand = lazy(keysModule, 'keysListCommand');
export const keysRotateCommand = lazy(keysModule, 'keysRotateCommand');
export const drainCommand = lazy(poolModule, 'drainCommand');
export const poolCommand = lazy(poolModule, 'poolCommand');
export const setupCommand = lazy(setupModule, 'setupCommand');
export const tagCreateCommand = lazy(tagModule, 'tagCreateCommand');
export const tagShowCommand = lazy(tagModule, 'tagShowCommand');
export const repeatCommand = lazy(actionsModule, 'repeatCommand');
export const tagStopCommand = lazy(actionsModule, 'tagStopCommand');
export const bestCommand = lazy(recordsModule, 'bestCommand');
export const historyCommand = lazy(recordsModule, 'historyCommand');
export const nearMissesCommand = lazy(recordsModule, 'nearMissesCommand');
export const reportCommand = lazy(recordsModule, 'reportCommand');
export const strategyCommand = lazy(recordsModule, 'strategyCommand');
export const suggestCommand = lazy(recordsModule, 'suggestCommand');
export const orchestratorCommand = lazy(workerModule, 'orchestratorCommand');
export const workerCommand = lazy(workerModule, 'workerCommand');
export const decideCommand = lazy(promotionModule, 'decideCommand');
export const modelsCommand = lazy(promotionModule, 'modelsCommand');
export const promoteCommand = lazy(promotionModule, 'promoteCommand');
export const promotionShowCommand = lazy(promotionModule, 'promotionShowCommand');
export const rollbackCommand = lazy(promotionModule, 'rollbackCommand');
export const lineageCommand = lazy(lineageModule, 'lineageCommand');
export const fleetRemoteCheckPushCommand = lazy(fleetRemoteModule, 'fleetRemoteCheckPushCommand');
export const fleetRemoteServeCommand = lazy(fleetRemoteModule, 'fleetRemoteServeCommand');
export const alertsCommand = lazy(dataModule, 'alertsCommand');
export const dataAddCommand = lazy(dataModule, 'dataAddCommand');
export const dataPolicyCommand = lazy(dataModule, 'dataPolicyCommand');
export const dataShowCommand = lazy(dataModule, 'dataShowCommand');
export const dataVersionsCommand = lazy(dataModule, 'dataVersionsCommand');
export const dataWatchCommand = lazy(dataModule, 'dataWatchCommand');
export const gatesCommand = lazy(dataModule, 'gatesCommand');

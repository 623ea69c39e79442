import { ensureSeaweedFs } from '../../store/seaweedfs.js';

export async function installSeaweedFsCommand(): Promise<void> {
  const binary = await ensureSeaweedFs();
  console.log(binary);
}

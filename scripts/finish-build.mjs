// After `tsc -p tsconfig.build.json`: the plain JavaScript modules (supervisor, run cgroups) go
// beside the compiled ones, and a stamp says when the build was made (bin/expctl.js runs dist/
// only while no source file is newer than it).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
for (const name of fs.readdirSync(path.join(root, 'src'), { recursive: true, encoding: 'utf8' })) {
  if (!name.endsWith('.mjs')) continue;
  fs.mkdirSync(path.dirname(path.join(root, 'dist', name)), { recursive: true });
  fs.copyFileSync(path.join(root, 'src', name), path.join(root, 'dist', name));
}
fs.writeFileSync(path.join(root, 'dist', '.built'), `${new Date().toISOString()}\n`);

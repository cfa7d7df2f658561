import * as fs from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';

/**
 * Where buildd.proto is. tsc does not copy .proto files, so from dist/buildd/api the source
 * file is found in the package's buildd/api folder. Its own module, without gRPC: buildctl's
 * walk worker reads the same file to encode listings and loads nothing else of the API.
 */
export function protoPath(): string {
  const candidates = [
    path.join(__dirname, 'buildd.proto'),
    path.resolve(__dirname, '..', '..', '..', 'buildd', 'api', 'buildd.proto'),
  ];
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new BuildError('internal', `Cannot load the API definition: buildd.proto not found in ${candidates.join(', ')}`);
}

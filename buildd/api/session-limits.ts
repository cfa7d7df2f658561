/**
 * Sizes both ends of a build session agree on. A module without zod: buildctl imports these,
 * and loading zod/v4 (the daemon's message schemas) costs its start about 35 ms.
 */

/** Largest secret value (BuildKit's secretsprovider.MaxSecretSize). */
export const MAX_SECRET_BYTES = 500 * 1024;
/** Largest chunk of an ssh agent channel, either way. */
export const MAX_SSH_CHUNK_BYTES = 64 * 1024;

import { BuildError } from '../../../../solver/build-error';
import { checkRunnable, type WorkerPlatforms } from '../../../../buildd/worker/worker-platforms';

const amd64 = { os: 'linux', architecture: 'amd64' };
const withArm64: WorkerPlatforms = {
  build: amd64,
  runnable: [amd64, { os: 'linux', architecture: '386' }, { os: 'linux', architecture: 'arm64' }],
  emulated: [{ platform: { os: 'linux', architecture: 'arm64' }, name: 'qemu-aarch64', interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P', fixBinary: true }],
  dir: '/proc/sys/fs/binfmt_misc',
};

test('steps of runnable platforms pass, in any number', () => {
  expect(() => checkRunnable(withArm64, ['linux/amd64', 'linux/arm64', 'linux/amd64', 'linux/386'])).not.toThrow();
  expect(() => checkRunnable(withArm64, [])).not.toThrow();
});

test('a step of another platform fails as a precondition, naming the emulator to install', () => {
  let err: unknown;
  try {
    checkRunnable(withArm64, ['linux/amd64', 'linux/riscv64']);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(BuildError);
  expect(err).toMatchObject({ code: 'failed-precondition' });
  expect((err as Error).message).toMatch(/^Cannot build for linux\/riscv64 on this linux\/amd64 machine: .*qemu-user-static.*qemu-riscv64-static/);
});

test('a handler registered without the F flag is named as the reason', () => {
  const noF: WorkerPlatforms = { ...withArm64, runnable: [amd64], emulated: [{ ...withArm64.emulated[0]!, fixBinary: false }] };
  expect(() => checkRunnable(noF, ['linux/arm64'])).toThrow(/qemu-aarch64 .* without the F \(fix binary\) flag/);
});

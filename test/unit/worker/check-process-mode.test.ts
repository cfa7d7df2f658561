import { checkProcessMode, NO_PROCESS_SANDBOX_WARNING } from '../../../buildd/worker/check-process-mode';
import { workerRecord } from '../../../buildd/ops/worker-record';
import { captureLogger } from '../../helpers/capture-logger';

describe("the steps' process mode at start", () => {
  it("no-sandbox: BuildKit's warning, and no probe", async () => {
    const { logger, at } = captureLogger();
    const probe = jest.fn(async () => 'refused');
    await expect(checkProcessMode({ rootless: true, noProcessSandbox: true }, logger, probe)).resolves.toBe('no-sandbox');
    expect(at('warn').map((l) => l.msg)).toEqual([NO_PROCESS_SANDBOX_WARNING]);
    expect(NO_PROCESS_SANDBOX_WARNING).toMatch(/^NoProcessSandbox is enabled.*see, kill \(and potentially ptrace\)/);
    expect(probe).not.toHaveBeenCalled();
  });

  it('rootless sandbox: says at start that steps will fail where /proc cannot be mounted, and which flag makes them run', async () => {
    const { logger, at } = captureLogger();
    await expect(checkProcessMode({ rootless: true, noProcessSandbox: false }, logger, async () => 'unshare: mount /proc failed: Operation not permitted')).resolves.toBe('sandbox');
    expect(at('warn')).toEqual([
      expect.objectContaining({ reason: 'unshare: mount /proc failed: Operation not permitted', msg: expect.stringMatching(/^rootless: RUN steps will fail: .*start buildd with --oci-worker-no-process-sandbox.*\(unshare: mount \/proc failed/) }),
    ]);
    const quiet = captureLogger();
    await checkProcessMode({ rootless: true, noProcessSandbox: false }, quiet.logger, async () => undefined);
    expect(quiet.lines).toEqual([]);
  });

  it('root: not probed (outside a user namespace the kernel lets it mount procfs under masks)', async () => {
    const probe = jest.fn(async () => 'refused');
    await expect(checkProcessMode({ rootless: false, noProcessSandbox: false }, captureLogger().logger, probe)).resolves.toBe('sandbox');
    expect(probe).not.toHaveBeenCalled();
  });

  it("buildctl debug workers shows it: BuildKit's process-mode label and the executor line", () => {
    const base = { rootless: true, snapshotter: 'overlayfs', gcPolicy: [], network: 'cni' };
    expect(workerRecord(base)).toMatchObject({ executor: 'runc (rootless)', labels: { 'org.mobyproject.buildkit.worker.oci.process-mode': 'sandbox' } });
    expect(workerRecord({ ...base, noProcessSandbox: true })).toMatchObject({ executor: 'runc (rootless, no process sandbox)', labels: { 'org.mobyproject.buildkit.worker.oci.process-mode': 'no-sandbox' } });
    expect(workerRecord({ ...base, rootless: false }).executor).toBe('runc');
  });
});

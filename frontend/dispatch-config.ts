import { commandArgs, commit, expanderFor } from './dispatch-helpers';
import { EnvList } from './env-list';
import { parsePortSpec, PortSpecError } from './expose-ports';
import { goEmptyStructMap, goQuoteList } from './go-format';
import { HealthcheckError, HealthConfig, healthcheckHistory, parseGoDuration } from './healthcheck';
import { ParsedInstruction } from './parse-instruction';
import type { DispatchContext, StageState } from './stage-dispatch';

/** The instructions that change only the image config (one history entry without a layer). */

type ConfigInstruction = Exclude<ParsedInstruction, { kind: 'RUN' | 'WORKDIR' | 'COPY' | 'ADD' }>;

export function dispatchConfig(st: StageState, ins: ConfigInstruction, ctx: DispatchContext): void {
  const x = expanderFor(st, ctx, ins.at);
  const config = st.image.config ?? (st.image.config = {});
  switch (ins.kind) {
    case 'ENV': {
      const pairs = ins.pairs.map((p) => ({ key: x.word(p.key), value: x.word(p.value) }));
      const env = EnvList.fromStrings(config.Env ?? []);
      for (const { key, value } of pairs) {
        st.env.set(key, value);
        env.set(key, value);
      }
      config.Env = env.toStrings();
      return commit(st, 'ENV ' + pairs.map((p) => `${p.key}=${p.value}`).join(' '), false);
    }
    case 'LABEL': {
      const pairs = ins.pairs.map((p) => ({ key: x.word(p.key), value: x.word(p.value) }));
      const labels = config.Labels ?? {};
      for (const { key, value } of pairs) labels[key] = value;
      config.Labels = labels;
      return commit(st, 'LABEL ' + pairs.map((p) => `${p.key}=${p.value}`).join(' '), false);
    }
    case 'ARG': {
      const shown: string[] = [];
      for (const arg of ins.args) {
        const key = x.word(arg.key);
        const def = arg.value === undefined ? undefined : x.word(arg.value);
        let value: string | undefined;
        if (Object.prototype.hasOwnProperty.call(ctx.buildArgs, key)) value = ctx.buildArgs[key];
        else if (def !== undefined) value = def;
        // A bare ARG takes a build arg or the global value; else the stage keeps what it has
        // (an ENV of that name wins, as the reference shows).
        else value = ctx.globalArgs.get(key) ?? st.env.get(key);
        if (value !== undefined) st.env.set(key, value);
        // Every declaration counts, a repeated one too: the reference's RUN history lists
        // `|2 A=3 A=3` for two `ARG A` lines (conformance case c91).
        st.args.push({ key, value });
        // The reference builder records the default as written (expanded), not the override.
        shown.push(def === undefined ? key : `${key}=${def}`);
      }
      return commit(st, 'ARG ' + shown.join(' '), false);
    }
    case 'USER':
      config.User = x.word(ins.value);
      return commit(st, `USER ${config.User}`, false);
    case 'STOPSIGNAL': {
      const signal = x.word(ins.value);
      // The reference records any word as written (`sigterm`, `FOO`): the runtime judges it.
      if (signal === '') x.fail('STOPSIGNAL requires exactly one argument');
      config.StopSignal = signal;
      return commit(st, `STOPSIGNAL ${signal}`, false);
    }
    case 'MAINTAINER':
      st.image.author = x.word(ins.value);
      return commit(st, `MAINTAINER ${st.image.author}`, false);
    case 'EXPOSE': {
      const keys: string[] = [];
      for (const raw of ins.values) {
        for (const spec of x.words(raw)) {
          try {
            keys.push(...parsePortSpec(spec));
          } catch (err) {
            if (err instanceof PortSpecError) x.fail(err.message);
            throw err;
          }
        }
      }
      const exposed = config.ExposedPorts ?? {};
      for (const k of keys) exposed[k] = {};
      config.ExposedPorts = exposed;
      return commit(st, `EXPOSE ${goEmptyStructMap(keys)}`, false);
    }
    case 'VOLUME': {
      const volumes = ins.values.map((v) => x.word(v));
      if (volumes.some((v) => v.trim() === '')) x.fail('VOLUME specified can not be an empty string');
      const all = config.Volumes ?? {};
      for (const v of volumes) all[v] = {};
      config.Volumes = all;
      return commit(st, `VOLUME [${volumes.join(' ')}]`, false);
    }
    case 'SHELL':
      config.Shell = [...ins.args];
      return commit(st, `SHELL [${ins.args.join(' ')}]`, false);
    case 'CMD': {
      const args = commandArgs(ins.command, config);
      config.Cmd = args;
      config.ArgsEscaped = true;
      st.cmdSet = true;
      return commit(st, `CMD ${goQuoteList(args)}`, false);
    }
    case 'ENTRYPOINT': {
      config.Entrypoint = commandArgs(ins.command, config);
      // A CMD inherited from the base would be handed to the new entrypoint by surprise.
      if (!st.cmdSet) delete config.Cmd;
      return commit(st, `ENTRYPOINT ${goQuoteList(config.Entrypoint)}`, false);
    }
    case 'HEALTHCHECK': {
      const health = healthcheck(ins, x.fail);
      config.Healthcheck = { ...health };
      return commit(st, healthcheckHistory(health), false);
    }
    case 'ONBUILD':
      // The reference records the trigger in the config and writes no history entry for it.
      config.OnBuild = [...(config.OnBuild ?? []), ins.trigger];
      return;
  }
}

function healthcheck(ins: ConfigInstruction & { kind: 'HEALTHCHECK' }, fail: (m: string) => never): HealthConfig {
  if (!ins.command) return { Test: ['NONE'] };
  const test = ins.command.form === 'exec' ? ['CMD', ...ins.command.args] : ['CMD-SHELL', ins.command.text];
  const health: HealthConfig = { Test: test };
  try {
    const fields: Array<[string, 'Interval' | 'Timeout' | 'StartPeriod' | 'StartInterval']> = [
      ['interval', 'Interval'], ['timeout', 'Timeout'], ['start-period', 'StartPeriod'], ['start-interval', 'StartInterval'],
    ];
    for (const [flag, key] of fields) {
      const text = ins.options.get(flag);
      if (text === undefined) continue;
      const ns = parseGoDuration(text, flag);
      // Given explicitly, the reference refuses anything under a millisecond, 0 included.
      if (ns < 1_000_000) fail(`Interval "${flag}" cannot be less than 1ms`);
      health[key] = ns;
    }
  } catch (err) {
    if (err instanceof HealthcheckError) fail(err.message);
    throw err;
  }
  const retries = ins.options.get('retries');
  if (retries !== undefined) {
    if (!/^-?\d+$/.test(retries)) fail(`invalid --retries value "${retries}" (a whole number is expected)`);
    if (Number(retries) < 1) fail(`--retries must be at least 1 (not ${Number(retries)})`);
    health.Retries = Number(retries);
  }
  return health;
}

// Carme's JupyterLab extension (plain ES modules: no compile step before @jupyterlab/builder).
//
// - The status bar shows the session's facts: job id, GPUs, node and the time left, counting down.
// - Warnings before the job's time limit (carme-sessions' warn_minutes) and before the idle culler
//   stops the server go to JupyterLab 4's notification area, with Extend +N min and Keep running;
//   optionally also as browser notifications (the user allows them from a warning).
// The page asks only its own server (carme_lab.relay: GET carme/session, POST carme/extend and
// carme/keep-running), which asks the hub's services with the session's token: it holds no token.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

const PLUGIN = 'carme-lab:session';
const CMD = {
  extend: 'carme-lab:extend',
  keepRunning: 'carme-lab:keep-running',
  browser: 'carme-lab:browser-notifications'
};

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = n => String(n).padStart(2, '0');
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

export function statusText(facts, leftSeconds) {
  if (!facts || !facts.job_id) {
    return '';
  }
  const parts = [`Job ${facts.job_id}`];
  if (facts.gpus) {
    parts.push(`${facts.gpus}× ${facts.gpu_type || 'GPU'}`);
  }
  if (facts.node) {
    parts.push(facts.node);
  }
  if (leftSeconds !== null && leftSeconds !== undefined) {
    parts.push(`${clock(leftSeconds)} left`);
  }
  return parts.join(' · ');
}

async function relay(settings, path, body) {
  const init = body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) };
  const response = await ServerConnection.makeRequest(
    URLExt.join(settings.baseUrl, 'carme', path), init, settings);
  let answer = {};
  try {
    answer = await response.json();
  } catch (e) {
    answer = {};
  }
  if (!response.ok) {
    throw new Error(answer.message || `HTTP ${response.status}`);
  }
  return answer;
}

function activate(app, statusBar) {
  const settings = app.serviceManager.serverSettings;
  const notify = args => app.commands.execute('apputils:notify', args);
  const shown = new Map(); // warning key -> notification id
  let facts = null;
  let endsAt = null; // ms since epoch, from time_left_s when it was read
  let timer = null;

  const item = new Widget();
  item.addClass('carme-lab-status');
  item.node.title = 'Carme: this session (job, GPUs, node, time left)';
  const render = () => {
    const left = endsAt === null ? null : (endsAt - Date.now()) / 1000;
    item.node.textContent = statusText(facts, left);
    item.node.classList.toggle('carme-lab-warned', !!(facts && facts.warnings.length));
  };
  if (statusBar) {
    statusBar.registerStatusItem(PLUGIN, { item, align: 'left', rank: 50 });
  }
  setInterval(render, 1000);

  const browserNotify = warning => {
    if (window.Notification && Notification.permission === 'granted') {
      new Notification('Carme', { body: warning.message, tag: warning.key });
    }
  };

  const showWarnings = async () => {
    const current = new Set(facts.warnings.map(w => w.key));
    for (const [key, id] of shown) {
      if (!current.has(key)) {
        await app.commands.execute('apputils:dismiss-notification', { id });
        shown.delete(key);
      }
    }
    for (const warning of facts.warnings) {
      if (shown.has(warning.key)) {
        continue;
      }
      const actions = warning.actions.map(a => ({
        label: a.label,
        commandId: a.command === 'extend' ? CMD.extend : CMD.keepRunning,
        args: a.minutes ? { minutes: a.minutes } : {}
      }));
      if (window.Notification && Notification.permission === 'default') {
        actions.push({ label: 'Notify me in the browser too', commandId: CMD.browser, args: {} });
      }
      const id = await notify({ message: warning.message, type: 'warning', options: { autoClose: false, actions } });
      shown.set(warning.key, id);
      browserNotify(warning);
    }
  };

  const forget = async kind => {
    for (const warning of facts ? facts.warnings : []) {
      if (warning.kind === kind && shown.has(warning.key)) {
        await app.commands.execute('apputils:dismiss-notification', { id: shown.get(warning.key) });
        shown.delete(warning.key);
      }
    }
  };

  // one refresh at a time (the timer's and an action's): a warning is notified once
  let queue = Promise.resolve();
  const refresh = () => {
    queue = queue.then(readFacts, readFacts);
    return queue;
  };
  const readFacts = async () => {
    clearTimeout(timer);
    let poll = 30;
    try {
      facts = await relay(settings, 'session');
      poll = facts.poll_seconds || poll;
      endsAt = facts.time_left_s === null || facts.time_left_s === undefined
        ? null : Date.now() + facts.time_left_s * 1000;
      if (facts.problems.length) {
        console.warn('carme-lab:', facts.problems.join('; '));
      }
      render();
      await showWarnings();
    } catch (e) {
      console.warn('carme-lab: the session relay did not answer:', e.message);
    }
    timer = setTimeout(refresh, Math.max(2, poll) * 1000);
  };

  app.commands.addCommand(CMD.extend, {
    label: args => `Extend this session by ${args.minutes} min`,
    execute: async args => {
      try {
        const answer = await relay(settings, 'extend', { minutes: args.minutes });
        await notify({
          message: `Extended by ${answer.minutes} min: the time limit is now ${answer.to_minutes} min.`,
          type: 'success', options: { autoClose: 8000 }
        });
      } catch (e) {
        await notify({ message: e.message.startsWith('Extend') ? e.message : `Extend refused: ${e.message}`, type: 'error', options: { autoClose: false } });
        queue = queue.then(() => forget('walltime')); // the warning comes back with its choices
      }
      await refresh();
    }
  });
  app.commands.addCommand(CMD.keepRunning, {
    label: 'Keep this server running (reset the idle clock)',
    execute: async () => {
      try {
        const answer = await relay(settings, 'keep-running', {});
        await notify({
          message: `Kept running: the idle clock starts again (${answer.keep_running_left} more presses).`,
          type: 'success', options: { autoClose: 8000 }
        });
      } catch (e) {
        await notify({ message: /^keep running/i.test(e.message) ? e.message : `Keep running refused: ${e.message}`, type: 'error', options: { autoClose: false } });
        queue = queue.then(() => forget('idle'));
      }
      await refresh();
    }
  });
  app.commands.addCommand(CMD.browser, {
    label: 'Also show Carme warnings as browser notifications',
    execute: async () => {
      if (window.Notification) {
        await Notification.requestPermission();
      }
    }
  });

  app.restored.then(refresh);
}

export default {
  id: PLUGIN,
  description: "The Carme session's facts in the status bar and its warnings in the notification area.",
  autoStart: true,
  optional: [IStatusBar],
  activate
};

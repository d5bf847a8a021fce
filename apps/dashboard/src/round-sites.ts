import type { Round } from './types';

/**
 * The rounds table's Sites cell: sites whose update counted over the round's participants and,
 * when the aggregator drew the round's sites (client sampling), how many it drew of those
 * connected; the title lists every participant's status.
 */
export function roundSites(r: Pick<Round, 'participants' | 'metrics'>): {
  text: string;
  title: string;
} {
  const sent = r.participants.filter(
    (p) => p.status === 'submitted' || p.status === 'evaluated',
  ).length;
  const draw = r.metrics?.sampling ?? null;
  const lines = r.participants.map((p) => `${p.name}: ${p.status}`);
  if (draw) {
    lines.unshift(
      `drawn ${draw.sampled} of ${draw.connected} connected site(s) (fraction ${draw.fraction})`,
    );
  }
  return {
    text: `${sent}/${r.participants.length}` + (draw ? ` · drawn of ${draw.connected}` : ''),
    title: lines.join('\n'),
  };
}

/**
 * Who changes what, and why: every mutation must carry `X-Operator-Reason` (recorded in the audit
 * log with the token's name and the optional `X-Operator-Ticket`).
 */
import type { FastifyRequest } from 'fastify';
import type { Operator } from '../governance/definitions';
import { TollgateError } from '../errors';
import type { AuthContext } from './auth';

export function operatorOf(req: FastifyRequest, auth: AuthContext): Operator {
  const header = (name: string) => {
    const v = req.headers[name];
    return (Array.isArray(v) ? v[0] : v)?.trim();
  };
  const reason = header('x-operator-reason');
  const ticket = header('x-operator-ticket');
  const problems: Array<{ field: string; message: string }> = [];
  if (!reason) problems.push({ field: 'headers.x-operator-reason', message: 'required on every change: say why' });
  else if (reason.length > 500) problems.push({ field: 'headers.x-operator-reason', message: 'at most 500 characters' });
  if (ticket !== undefined && ticket.length > 200) problems.push({ field: 'headers.x-operator-ticket', message: 'at most 200 characters' });
  if (problems.length > 0) {
    throw new TollgateError('TG_ERR_VALIDATION', `invalid headers: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`, problems);
  }
  return { actor: auth.identity, reason: reason!, ...(ticket ? { ticket } : {}) };
}

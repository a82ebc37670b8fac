// A real OAuth2 server for Switchboard's connection tests: oauth2-mock-server on 127.0.0.1 and a
// free port. Prints one line `listening <issuer url>` when ready, then one line per token
// request (`token <grant_type>`) and revocation (`revoke`) so a test can count them.
//
// Environment:
//   MOCK_TOKEN_TTL     expires_in of issued tokens, in seconds (default 3600)
//   MOCK_TTL_AS_STRING when set, expires_in is sent as a string (a lenient-parsing check)
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');

const ttl = Number(process.env.MOCK_TOKEN_TTL ?? '3600');
server.service.on('beforeResponse', (response, req) => {
  const grant = req.body?.grant_type ?? 'unknown';
  process.stdout.write(`token ${grant}\n`);
  if (response.statusCode === 200 && response.body && 'access_token' in response.body) {
    response.body.expires_in = process.env.MOCK_TTL_AS_STRING ? String(ttl) : ttl;
  }
});
server.service.on('beforeRevoke', () => {
  process.stdout.write('revoke\n');
});

await server.start(0, '127.0.0.1');
const { port } = server.address();
process.stdout.write(`listening http://127.0.0.1:${port}\n`);

const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Stop with the test: when stdin closes (the parent went away), exit.
process.stdin.on('end', stop);
process.stdin.resume();

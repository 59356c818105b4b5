// An unmodified fastify app: fastify.listen({ port }), as its docs say. X-Pid names the worker that answered.
'use strict';
const fastify = require('fastify')();

fastify.get('/', async (request, reply) => {
  reply.header('X-Pid', String(process.pid));
  return String(process.pid);
});
fastify.listen({ port: Number(process.env.PORT) }).then(
  (address) => console.log(`fastify listening on ${address} pid=${process.pid}`),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);

import { z } from 'zod';

/**
 * Parses a program's settings from the environment once, at start. Each program declares its
 * settings as one zod object (name → schema with default); nothing else reads process.env.
 */
export function parseConfig<T extends z.ZodRawShape>(
  shape: T,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<z.ZodObject<T>> {
  const result = z.object(shape).safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${problems}`);
  }
  return result.data;
}

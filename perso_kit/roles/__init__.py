"""The paper's roles of an LLM in personalization, one module each.

==================  ===========================================================================
module              role
==================  ===========================================================================
``knowledge``       the LLM as a knowledge base: structured item attributes, user profiles in
                    words, checked against the catalog
``relations``       the LLM as a knowledge base of relations: item-item links (sequels,
                    franchises, themes) checked against the catalog, then added to item-kNN
``interpreter``     the LLM as a content interpreter: item and profile text turned into vectors;
                    a content recommender and a hybrid with collaborative filtering
``ranker``          the LLM as a ranker (re-ranking candidates)
``explainer``       the LLM as an explainer of recommendations
``judge``           the LLM as a judge of explanations (a rubric, pairwise verdicts), its
                    agreement with the programmatic checks and its biases measured
``conversation``    conversational recommendation
``agent``           the LLM as an agent: tools, a step-by-step loop, traces
``memory``          the agent's candidate memory: tools pass candidate sets by handle
``planner``         a plan-first agent: the whole tool plan at once, validated, run by code,
                    one reflection round
``task_suite``      the agent task suite: programmatic checks, success per family with
                    intervals
==================  ===========================================================================

Import the module you need, e.g. ``from perso_kit.roles import interpreter``.
"""
